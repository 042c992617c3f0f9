"""Use cases. Every interface (dashboard, REST, MCP, CLI, jobs) calls these.

Authorization and the audit record happen here, once, so no interface can skip
them. Long work is recorded as desired state plus a JobRun and handed to the
queue after the commit.
"""

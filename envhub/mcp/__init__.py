"""envhub's MCP server: the operations of the dashboard as tools for agents.

Streamable HTTP at ``/mcp`` (stateless, JSON answers), built with the
official ``mcp`` SDK and mounted on envhub's API app. Every call carries
``Authorization: Bearer <token>`` (a personal or an agent token); each tool
is a thin translation onto ``services/``, which authorize and audit, so an
agent token reaches its one environment and nothing else, exactly as it
would through REST.
"""

from envhub.mcp.endpoint import McpEndpoint, endpoint_of

__all__ = ["McpEndpoint", "endpoint_of"]

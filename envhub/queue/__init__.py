"""The job queue port (RQ on Redis) and the change-notification bus."""

"""The environment Foundry gives a job: variables, files it points at, settings and external sources."""

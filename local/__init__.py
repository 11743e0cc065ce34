"""Run the Lambda handler on this machine: one event (`make invoke`) or an HTTP server (`make serve`)."""

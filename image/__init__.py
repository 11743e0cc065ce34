"""Image tooling: a local container engine, the stand-in base image and the SAM CLI run offline."""

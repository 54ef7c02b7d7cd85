"""Deploy: the model server (Seldon Core) locally and its manifests for Kubernetes."""

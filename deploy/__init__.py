"""Deployment: the torch-free serving image (deploy/Containerfile, built and run through deploy/podman.py and
`python -m deploy`) and the Kubernetes manifests (deploy/kubernetes/), both following deploy/runtime.json."""

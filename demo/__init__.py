"""The offline demo: a scripted chat model, the demo scenario, and local tool services with fault injection."""

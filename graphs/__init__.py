"""The flows: cross-modal deployment graphs (speech -> text -> image, voice chat, image -> speech)
composed from model deployment handles by name, and how a stage is called (`stages`).

`graphs.app` builds the whole application (each model's deployment, the gateway over them) from
the config; the HTTP face is the `gateway` package.
"""

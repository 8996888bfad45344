"""The management HTTP API (RabbitMQ's rabbitmq_management, as its clients use it).

A layer above trimq/server: it reads the running server's state and calls the broker's
functions; nothing below imports it. listener.py serves an ASGI application on trio
(hypercorn), app.py builds the Starlette application from the route modules in api/, one per
family of endpoints.
"""

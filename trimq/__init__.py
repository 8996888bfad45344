"""trimq: an AMQP 0-9-1 message broker on trio, compatible with RabbitMQ clients."""

__version__ = "0.1.0"

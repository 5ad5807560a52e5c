"""rabbitscale: load-test and capacity-plan RabbitMQ/MassTransit task systems."""

__version__ = "0.1.0"

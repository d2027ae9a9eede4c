"""Structured logging, configured once per process: pretty on a terminal, JSON lines otherwise."""

import logging
import sys

import structlog


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog for this process. `json=None` picks JSON unless stderr is a tty."""
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(node: str | None = None) -> structlog.typing.FilteringBoundLogger:
    """A logger with the node's name bound, so every line says which process wrote it."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger()
    return logger.bind(node=node) if node else logger

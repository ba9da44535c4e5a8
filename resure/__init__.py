"""resure: benchmark loss-reweighting methods for multi-turn dialogue fine-tuning."""

from resure.conversation import Conversation, Message

__all__ = ["Conversation", "Message", "__version__"]
__version__ = "0.1.0"

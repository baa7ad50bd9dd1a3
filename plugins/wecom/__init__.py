"""WeCom (企业微信) group robots: text messages out through the robot's webhook."""

from bridge.plugins.wecom.config import WecomOutputConfig
from bridge.plugins.wecom.output import WecomOutput, split_bytes

__all__ = ["WecomOutput", "WecomOutputConfig", "split_bytes"]

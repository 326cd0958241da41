from .connector import MinuteStats, Reading, SensorMinute, SensorMinutes, Stats

__all__ = ["MinuteStats", "Reading", "SensorMinute", "SensorMinutes", "Stats"]

from .connector import MinuteStats, Reading, SensorMinute, SensorMinutes, SensorMinutesReread, Stats

__all__ = ["MinuteStats", "Reading", "SensorMinute", "SensorMinutes", "SensorMinutesReread", "Stats"]

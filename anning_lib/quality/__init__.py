"""Data quality, alarms and work orders: checks on the live stream and stored series, alarm rules as data, the
ISA-18.2 alarm lifecycle, notifications and work orders. See docs/alarms.md."""

"""The district side of entry-buzzer: a recorder that files every campus's MQTT feed into
PostgreSQL (``district.recorder``) and a board that shows it (``district.board``).

Both are stateless processes over one PostgreSQL database (``schema.sql``) and one district
broker, so a district runs several instances of each when one machine is not enough.
"""

from pathlib import Path

SCHEMA_SQL = Path(__file__).resolve().parent / "schema.sql"

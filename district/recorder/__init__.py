"""The district recorder: MQTT feed of every campus -> PostgreSQL, acknowledged only once
committed. ``messages`` classifies and validates, ``store`` writes a batch, ``gaps`` finds
missing seqs, ``retention`` drops old data, ``service`` ties them to the broker."""

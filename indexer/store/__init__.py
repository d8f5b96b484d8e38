"""The index database: `schema.sql` applied through SQLAlchemy Core on SQLite or PostgreSQL.

Callers use the names below as ``store.NAME``; each lives in the module of its concept:
`indexer.store.schema`, what an index holds (schema.sql, table handles, version, settings, messages);
`indexer.store.opening`, opening, making, upgrading and repairing an index; `indexer.store.write`, the write
path of indexing runs and merges; `indexer.store.read`, the read path of query, serve, show, stats and redact;
`indexer.store.runs`, each class's photos as blobs kept beside the label rows, which an AND or a relation of
two words reads.
"""

from indexer.store.schema import (
    BOX_COLUMNS, DEFAULT_RUNTIME, DETECTOR_OFF, DETECTOR_ON, FACES_OFF, FACES_ON, IN_CHUNK, PG_REWRITES,
    SCHEMA_VERSION, SETTING_KEYS, SKIPPED_PREFIX, SQL_TYPES, TABLE_NAMES, TEXT_COLUMNS, WORD_COLUMNS, IndexSettings, Tables, damaged,
    declared_tables, in_memory, mark_all_stale, read_meta, read_settings, schema_statements, shown, shown_engine,
    sqlite_path, tables, top_level_items,
)
from indexer.store.opening import (
    BACKENDS, DB_ENV, DEFAULT_DB_NAME, DETECTOR_KEYS, FACES_TABLE_VERSION, LABELS_KEPT_FROM, PG_CONNECT_TIMEOUT_S,
    TAKEN_COLUMNS, TAKEN_VERSION,
    PG_CORRUPT, PG_CREATE_LOCK, PG_DAMAGE, PG_READ_ONLY_OPTION, READ_ONLY_MEDIUM, SQLITE_BUSY_TIMEOUT_S,
    SQLITE_CORRUPT, SQLITE_DAMAGE, as_url, create_engine, default_db_url, default_folder, error_reason, open_index,
    parse_url,
)
from indexer.store.write import (
    RETRY_SQLSTATES, TRANSACTION_ATTEMPTS, FileRecord, FileRow, box_row, copy_images, delete_images,
    file_records, read_settings_locked, save_images, set_taken, taken_fields, transaction, update_files,
    upsert_images, utc_now, write_settings, write_meta, add_classes, has_labels, labelled_ids, model_label_rows,
    replace_compound_rows,
)
from indexer.store.runs import ANYWHERE, RUN_IDS, kept as keeps_runs, read as read_runs, rebuild as rebuild_runs
from indexer.store.runs import record as record_runs
from indexer.store.read import (
    ImageReport, IndexStats, StoredLabel, box_overlays, boxes_of, bytewise, image_report, index_stats, read_boxes,
    read_calibration, read_texts, stored_cell, stored_number,
)

__all__ = [
    "SCHEMA_VERSION", "TABLE_NAMES", "PG_REWRITES", "schema_statements", "shown", "shown_engine", "in_memory",
    "sqlite_path", "Tables", "tables", "SQL_TYPES", "top_level_items", "declared_tables", "read_meta",
    "SETTING_KEYS", "DETECTOR_ON", "DETECTOR_OFF", "FACES_ON", "FACES_OFF", "DEFAULT_RUNTIME", "SKIPPED_PREFIX",
    "IN_CHUNK", "IndexSettings", "read_settings", "mark_all_stale", "BOX_COLUMNS", "damaged", "LABELS_KEPT_FROM",
    "FACES_TABLE_VERSION", "TAKEN_VERSION", "TAKEN_COLUMNS", "DB_ENV", "DEFAULT_DB_NAME", "SQLITE_BUSY_TIMEOUT_S", "BACKENDS", "PG_CONNECT_TIMEOUT_S",
    "PG_CREATE_LOCK", "default_folder", "default_db_url", "as_url", "parse_url", "error_reason", "READ_ONLY_MEDIUM",
    "PG_READ_ONLY_OPTION", "create_engine", "open_index", "DETECTOR_KEYS", "SQLITE_DAMAGE", "SQLITE_CORRUPT",
    "PG_DAMAGE", "PG_CORRUPT", "read_settings_locked", "write_settings", "RETRY_SQLSTATES",
    "TRANSACTION_ATTEMPTS", "transaction", "FileRecord", "file_records", "FileRow", "utc_now", "upsert_images",
    "save_images", "set_taken", "taken_fields", "box_row", "copy_images", "update_files", "delete_images", "read_calibration", "bytewise",
    "read_boxes", "boxes_of", "box_overlays", "StoredLabel", "ImageReport", "image_report", "IndexStats",
    "index_stats", "stored_number", "stored_cell", "read_texts", "TEXT_COLUMNS", "WORD_COLUMNS", "write_meta",
    "add_classes", "has_labels", "labelled_ids", "model_label_rows", "replace_compound_rows", "ANYWHERE", "RUN_IDS",
    "keeps_runs", "read_runs", "rebuild_runs", "record_runs",
]

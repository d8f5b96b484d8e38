-- imgidx index schema: the single source of truth for the database.
-- Applied through SQLAlchemy by indexer/store.py; shipped in the wheel as indexer/data/schema.sql.
-- Portable SQL (SQLite now, PostgreSQL later): no AUTOINCREMENT, no WITHOUT ROWID, no SQLite-only types.
-- The schema version lives in meta('schema_version'); bump SCHEMA_VERSION in store.py with every change.

-- Key/value settings the index was built with: schema_version, model, working_size, precision, calibration
-- (the version of indexer/calibration.py's curve its scores are read with; version 2 of the schema), faces
-- ('on' or 'off': whether every labelled image went through the face detector; version 3), objects ('on' or
-- 'off': whether it went through the object detector; version 4), text ('on' or 'off': whether its text
-- was read; version 5).
CREATE TABLE IF NOT EXISTS meta (
    key   VARCHAR(64) PRIMARY KEY,
    value TEXT NOT NULL
);

-- The 1000 ImageNet classes, class_id = model output index (no background class), and imgidx's own labels:
-- face (class_id 1000, indexer.labels.FACE_CLASS; version 3 of the schema) and COCO's 80 object classes
-- (class_id 1001-1080, indexer.labels.object_class, wnid 'coco:K'; version 4).
CREATE TABLE IF NOT EXISTS classes (
    class_id INTEGER PRIMARY KEY,
    wnid     VARCHAR(16) NOT NULL UNIQUE,
    name     TEXT NOT NULL,            -- display name (first synonym)
    names    TEXT NOT NULL             -- all synonyms, comma-separated, as in imagenet_classes.tsv
);

-- Every WordNet 3.0 ancestor of every class (over all hypernym paths), e.g. (207, n02084071, dog).
CREATE TABLE IF NOT EXISTS class_ancestors (
    class_id      INTEGER NOT NULL REFERENCES classes (class_id),
    ancestor_wnid VARCHAR(16) NOT NULL,
    ancestor_name TEXT NOT NULL,
    PRIMARY KEY (class_id, ancestor_wnid)
);
CREATE INDEX IF NOT EXISTS class_ancestors_wnid ON class_ancestors (ancestor_wnid);

-- One row per file seen. Rows with error IS NOT NULL are failed files (kept so the summary can count them);
-- an error 'skipped: REASON' marks an image name the walk did not open (a FIFO, a broken link, a path too long).
-- path: the absolute path as text; a name that is not valid UTF-8 is stored as a file:// URI of its bytes,
-- percent-encoded ('file:///photos/caf%E9.jpg'; indexer/names.py), so every path is valid UTF-8 and reversible.
CREATE TABLE IF NOT EXISTS images (
    image_id     INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,  -- absolute path (see above for non-UTF-8 names)
    size_bytes   BIGINT NOT NULL,
    mtime_ns     BIGINT NOT NULL,
    content_hash VARCHAR(64),           -- sha256 hex of the file bytes; NULL if unreadable
    width        INTEGER,               -- after EXIF orientation
    height       INTEGER,
    model        VARCHAR(64),
    working_size INTEGER,
    indexed_at   VARCHAR(32) NOT NULL,  -- ISO 8601, UTC
    error        TEXT,                  -- NULL when labels were stored
    taken_at     VARCHAR(19),           -- when the photo was taken (version 5), see below
    taken_offset VARCHAR(6),            -- taken_at's offset from UTC, '+02:00', where known
    taken_source VARCHAR(16),           -- where taken_at comes from, see below
    camera       TEXT                   -- EXIF Make and Model, 'Canon EOS 5D'; NULL: none recorded
);
CREATE INDEX IF NOT EXISTS images_content_hash ON images (content_hash);
-- The images a query leaves out (query.compile.unlabelled: failed, or waiting to be redone after --reindex;
-- version 7): few or none, so a query of one term counts its matches without reading every matching image's
-- row (a word in 50,000 of 1,000,000 photos: bench/RESULTS.md).
CREATE INDEX IF NOT EXISTS images_unlabelled ON images (image_id) WHERE error IS NOT NULL OR model IS NULL;
-- When photos were taken (version 5; indexer/images.py reads it from the header the decode opens anyway):
-- taken_at is local time as the camera's clock showed it, 'YYYY-MM-DDTHH:MM:SS', so it sorts and compares as
-- text. taken_source says where it comes from: 'exif' (DateTimeOriginal), 'exif-digitized'
-- (DateTimeDigitized), 'exif-datetime' (IFD0 DateTime: the file's last change, by EXIF's definition), 'mtime'
-- (no EXIF date: the file's modification time, as the indexing machine's local time), 'none' (no date:
-- taken_at NULL); NULL for failed files, and for photos indexed before version 5 until the next index run
-- reads their headers. Date filters and the sort by date read the index below (query/dates.py).
CREATE INDEX IF NOT EXISTS images_taken ON images (taken_at);

-- Image-level labels: score = the class's evidence in its best cell (what a query for it anywhere reads),
-- share = fraction of map positions whose top class this is. Top classes above a floor only.
-- Scores are evidence (indexer/regions.py), not what a person reads: that is the calibration's confidence.
CREATE TABLE IF NOT EXISTS image_labels (
    image_id INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes (class_id),
    score    REAL NOT NULL,
    share    REAL NOT NULL,
    PRIMARY KEY (image_id, class_id)
);
-- Covering (version 7; before it, image_labels_class without image_id): a detector's class anywhere is read from
-- here alone, in score order, by a query of one term (query.compile: the face in 339,000 of 1,000,000 photos).
CREATE INDEX IF NOT EXISTS image_labels_class_image ON image_labels (class_id, score, image_id);
-- A class's photos in image order, with their scores (version 9): two words' photos are intersected by merging
-- them, and each candidate's score of a word is one seek that does not visit the table (`person AND animal` at
-- 1M photos, 481,000 and 182,000 photos: 0.63 s sorted and looked up by the key, 0.17 s so; bench/RESULTS.md).
CREATE INDEX IF NOT EXISTS image_labels_class_by_image ON image_labels (class_id, image_id, score);

-- Cell-level labels: cell 0..8 row-major (0 top-left, 4 center, 8 bottom-right);
-- score = the class's evidence in the cell, a probability mass (indexer/regions.py: two views of the photo),
-- coverage = area-weighted share of the cell whose top class this is. Top classes above a floor only.
-- The rows of a box class (the face and COCO's objects) come from the boxes table (indexer/boxes.py): score
-- = the chance that some box of the class lies in the cell (indexer.boxes.cell_scores), coverage = the
-- share of the cell that the class's boxes cover; its image_labels row: the best cell's score, and the share
-- of the photo the boxes cover. These scores are probabilities, read as stored (indexer.calibration.AS_STORED).
-- Class ids from 100000 up are compounds (query/compounds.py): a word several classes answer (person, dog,
-- vehicle), its confidence in the cell as a query computes it from the rows above, stored from 0.1 up so a
-- query reads it as one class (coverage 0; in image_labels the best cell, share 0). Derived from the photo's
-- other rows by the writer; meta 'compounds' names the set an index holds. Not labels of a photo's own: what
-- lists labels leaves them out.
CREATE TABLE IF NOT EXISTS cell_labels (
    image_id INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    cell     SMALLINT NOT NULL CHECK (cell BETWEEN 0 AND 8),
    class_id INTEGER NOT NULL REFERENCES classes (class_id),
    score    REAL NOT NULL,
    coverage REAL NOT NULL,
    PRIMARY KEY (image_id, cell, class_id)
);
-- Covering index for query terms: a term's candidates come from (class_id, cell, score >= threshold) and
-- need only image_id, so the table itself is never visited (p95 of a two-term spatial AND on 1M images:
-- 111 ms without image_id here, 20 ms with it; bench/RESULTS.md).
CREATE INDEX IF NOT EXISTS cell_labels_class_cell_image ON cell_labels (class_id, cell, score, image_id);
-- Covering index for a term computed per candidate (version 8): one photo's rows of one class, all its cells
-- and their scores, in one seek. The primary key orders a photo's rows by cell, so the same lookup took nine
-- seeks and a visit to the table for each score, and a relation or AND with a term in half the photos
-- (`person above wallet`) read that term's every entry instead (bench/RESULTS.md, session 10).
CREATE INDEX IF NOT EXISTS cell_labels_image_class ON cell_labels (image_id, class_id, cell, score);

-- Boxes found by a detector (version 4 of the schema; version 3's faces table): faces (indexer/faces.py,
-- class_id 1000) when meta 'faces' is 'on', COCO objects (indexer/objects.py, class_id 1001-1080) when meta
-- 'objects' is 'on'; a labelled image without rows of a kind has none found. Boxes in pixels of the photo as
-- a person sees it (after EXIF orientation; the images row's width x height), x0 <= x1 and y0 <= y1;
-- confidence is the detector's.
CREATE TABLE IF NOT EXISTS boxes (
    image_id   INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    box        SMALLINT NOT NULL,   -- 0, 1, ... best confidence first, over all classes of the image
    class_id   INTEGER NOT NULL REFERENCES classes (class_id),
    x0         REAL NOT NULL,
    y0         REAL NOT NULL,
    x1         REAL NOT NULL,
    y1         REAL NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (image_id, box)
);

-- Lines of text read in the photos (indexer/text.py; version 5 of the schema) when meta 'text' is 'on'; a
-- labelled image without rows has none found. Box in pixels of the photo as a person sees it, as for boxes;
-- confidence is the recogniser's mean character confidence; cells the 9-bit mask (bit c: cell c, row-major)
-- of the cells the box occupies (indexer.boxes.occupied, the rule of every box); content the text as read.
CREATE TABLE IF NOT EXISTS texts (
    image_id   INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    line       SMALLINT NOT NULL,   -- 0, 1, ... in the order the reader gives (most confident detection first)
    x0         REAL NOT NULL,
    y0         REAL NOT NULL,
    x1         REAL NOT NULL,
    y1         REAL NOT NULL,
    confidence REAL NOT NULL,
    cells      SMALLINT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (image_id, line)
);

-- The words of each line, for search: word = the line's words with case, accents and OCR's usual slips
-- folded (indexer.words.searchable), position = the word's place in its line (0 first); a line of several
-- words also has them run together at position -1 (indexer.words.JOINED: 'MS 815 AJ' as 'ms815aj'). cells and confidence
-- repeat the line's, so a term's rows come from the word index alone: a word is found by equality, a prefix by
-- a range (word >= 're16' AND word < 're17'), which the index on word answers in both backends (words ordered
-- by their bytes: PostgreSQL's index gets COLLATE "C", store.schema.PG_REWRITES, and queries compare so).
CREATE TABLE IF NOT EXISTS text_words (
    image_id   INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    line       SMALLINT NOT NULL,
    position   SMALLINT NOT NULL,
    word       VARCHAR(64) NOT NULL,
    cells      SMALLINT NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (image_id, line, position)
);
CREATE INDEX IF NOT EXISTS text_words_word ON text_words (word, image_id, line, position, cells, confidence);

-- Each class's photos as runs of image ids and scores (version 10; indexer/store/runs.py): the rows of class_id
-- in cell (-1: its image_labels rows) of the image ids from run * 4096 to the next run's, as two blobs, the ids
-- ascending (4-byte unsigned integers, little-endian) and their scores (8-byte doubles, the rows' own). Derived
-- from the label rows in the transaction that writes them; an AND or a relation of two words reads these instead
-- of the rows (query/runs.py; at 1M photos, typed ANDs' p95 0.25 -> 0.05 s, relations' 0.13-0.18 -> 0.065 s).
-- Only SQLite indexes keep them (PostgreSQL's writers run at once and would all rewrite the same last runs):
-- PostgreSQL's stays empty.
CREATE TABLE IF NOT EXISTS class_runs (
    class_id INTEGER NOT NULL,
    cell     SMALLINT NOT NULL CHECK (cell BETWEEN -1 AND 8),
    run      INTEGER NOT NULL,
    ids      BLOB NOT NULL,
    scores   BLOB NOT NULL,
    PRIMARY KEY (class_id, cell, run)
);

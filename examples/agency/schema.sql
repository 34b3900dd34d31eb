-- The portal's own tables, as the sql connector expects them by default.
-- Both example systems (portal.sqlite, staging.sqlite) use this schema.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    managed_by   TEXT
);
CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

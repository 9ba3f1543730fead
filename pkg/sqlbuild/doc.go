// Package sqlbuild builds the documents of an index from Postgres, and finds
// the documents a batch of row changes affects.
//
// An index schema is compiled once and prepared once against the database,
// which reads the types of the columns it uses:
//
//	ix, err := sqlbuild.Compile("users", def)
//	err = ix.Prepare(ctx, pool)
//
// When the tables change shape while it is in use (a column retyped,
// dropped or added back), Refresh reads their shape again and returns a
// new Index prepared for it, or a *MissingError naming the field and the
// column the tables no longer have.
//
// Then, for a batch of changes from the replication stream:
//
//	if ix.RootTruncated(changes) { /* purge the index */ }
//	keys, all, err := ix.Affected(ctx, pool, changes)
//	docs, err := ix.Build(ctx, pool, keys) // all: rebuild every key, paging with Keys
//
// # Building
//
// Build runs one statement per batch of keys. The root rows are selected by
// `pk = ANY($1::text[]::<pk type>[])`, so the primary key index is used
// whatever the key's type, and each document is assembled by Postgres: an
// object is the row_to_json of a row joined LATERAL whose columns are its
// fields (json_build_object where raw filter SQL is in scope). Joins and
// aggregates are read a batch at a time: each is a table of the related rows
// of every document of the batch, grouped by the parent's key (json_agg for
// to-many joins, DISTINCT ON for has_one) and LEFT JOINed to the parent's
// rows, nested to any depth; aggregates without filters over the rows a
// to-many join reads are more columns of its table, one read of the rows for
// all. A belongs_to on the related table's primary key is a LEFT JOIN in the
// query holding its parent row. Each grouped table reads exactly the rows the
// documents hold (the set of keys one level up, with its filters), so a bad
// value elsewhere fails nothing. Where raw filter SQL could see the joined
// columns, and for to-many joins with a limit, the join is a correlated
// subquery run per parent row instead. Root filters and the soft delete
// marker are part of the WHERE clause: a key without a row is a tombstone
// (Doc.Body nil). Filter operands, defaults and constants are bound
// parameters.
//
// Values are rendered as OpenSearch accepts them: numbers as JSON numbers
// (numeric keeps its digits, money becomes numeric), timestamp without time
// zone as 2024-01-02T03:04:05.123456, timestamp with time zone in UTC as
// 2024-01-02T03:04:05.123456Z, time as 03:04:05, date as 2024-01-02, bytea as
// base64, uuid and enums as strings, json and jsonb as JSON. A column whose
// type differs from the field's declared type is cast to it. A value that
// cannot be rendered (a failed cast, an out of range integer, NaN, an
// infinite date) does not fail the batch: the batch is split until the
// documents at fault are found, and each gets a *DocError naming the index,
// the document and the field.
//
// To-many joins and to-one joins with order_by are ordered by their
// order_by then by the related primary key, so that building a document twice
// gives the same bytes.
//
// # Affected documents
//
// Affected maps changes to root keys. A change names what it can directly:
// the root row its key, a has_one/has_many/aggregate row its parent by its
// foreign key (old and new, so a moved row rebuilds both parents), a junction
// row its parent by left_key. A changed belongs_to target, many_to_many
// related row or aggregated row reached through a junction is traced by
// querying who points at it. From there each relation level is climbed with
// one query per level per batch, on current data. A change missing what it
// needs (an unchanged TOASTed foreign key) is traced from the row's key
// instead; a delete or update without its old row image, or a truncate of a
// related table, reports all=true: rebuild every document. Non-root tables
// must have REPLICA IDENTITY FULL so that deletes and updates carry the old
// row.
package sqlbuild

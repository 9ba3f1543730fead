package sqlbuild

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// goRendered builds the benchmark schema's documents from plain rows: one
// statement returns the rows of every level, tagged by kind, and Go renders
// the JSON. Written by hand for bench/schemas/users.schema.yml only, to
// measure what rendering in Go would save Postgres and cost this process;
// it leaves out the checks for non-finite values, so its Postgres figure is
// a lower bound.
const goRenderedSQL = `
SELECT 0, r."id", r."id", NULL::bigint, r."email", r."name", r."country", r."score"::bigint, r."probe", r."created_at", NULL::text, NULL::text, NULL::bigint
  FROM "public"."users" AS r WHERE r."id" = ANY($1::text[]::bigint[])
UNION ALL
(SELECT DISTINCT ON (a."user_id") 1, a."user_id", a."id", NULL, a."bio", a."city", a."birthday"::text, NULL, NULL, NULL, NULL, NULL, NULL
  FROM "public"."profiles" AS a WHERE a."user_id" = ANY($1::text[]::bigint[]) ORDER BY a."user_id", a."id")
UNION ALL
SELECT 2, a."user_id", a."id", NULL, a."status", NULL, NULL, NULL, NULL, a."created_at", a."total"::text, NULL, NULL
  FROM "public"."orders" AS a WHERE a."user_id" = ANY($1::text[]::bigint[])
UNION ALL
SELECT 3, o."user_id", i."id", i."order_id", p."name", c."name", NULL, i."quantity", p."id", NULL, i."unit_price"::text, p."price"::text, c."id"
  FROM "public"."order_items" AS i JOIN "public"."orders" AS o ON o."id" = i."order_id"
  LEFT JOIN "public"."products" AS p ON p."id" = i."product_id" LEFT JOIN "public"."categories" AS c ON c."id" = p."category_id"
  WHERE o."user_id" = ANY($1::text[]::bigint[])
UNION ALL
SELECT 4, j."user_id", t."id", NULL, t."name", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM "public"."tags" AS t JOIN "public"."user_tags" AS j ON j."tag_id" = t."id" WHERE j."user_id" = ANY($1::text[]::bigint[])
UNION ALL
SELECT 5, a."user_id", count(*), NULL, NULL, NULL, NULL, NULL, NULL, max(a."created_at"), sum(a."total")::text, avg(a."total")::float8::text, NULL
  FROM "public"."orders" AS a WHERE a."user_id" = ANY($1::text[]::bigint[]) GROUP BY a."user_id"`

type goRow struct {
	kind       int32
	k, id      int64
	parent     pgtype.Int8
	s1, s2, s3 pgtype.Text
	i1, i2     pgtype.Int8
	ts         pgtype.Timestamptz
	n1, n2     pgtype.Text
	i3         pgtype.Int8
}

type goUser struct {
	root    goRow
	profile *goRow
	orders  []*goOrder
	tags    []goRow
	agg     *goRow
}

type goOrder struct {
	row   goRow
	items []goRow
}

func goRender(ctx context.Context, c *pgx.Conn, keys []string) ([]Doc, error) {
	rows, err := c.Query(ctx, goRenderedSQL, keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	users := map[int64]*goUser{}
	orders := map[int64]*goOrder{}
	var items []goRow
	all := make([]goRow, 0, 32*len(keys)) // about the rows of a benchmark user
	// The values are read raw, as they come in binary (pgx's Scan spends
	// more than the rendering): integers and timestamps as 8 bytes, text
	// as is.
	for rows.Next() {
		v := rows.RawValues()
		var r goRow
		r.kind = int32(binary.BigEndian.Uint32(v[0]))
		r.k, r.id = int64(binary.BigEndian.Uint64(v[1])), int64(binary.BigEndian.Uint64(v[2]))
		r.parent, r.i1, r.i2, r.i3 = rawInt(v[3]), rawInt(v[7]), rawInt(v[8]), rawInt(v[12])
		r.s1, r.s2, r.s3, r.n1, r.n2 = rawText(v[4]), rawText(v[5]), rawText(v[6]), rawText(v[10]), rawText(v[11])
		if v[9] != nil {
			us := int64(binary.BigEndian.Uint64(v[9]))
			r.ts = pgtype.Timestamptz{Time: pgEpoch.Add(time.Duration(us) * time.Microsecond), Valid: true}
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.kind == 0 {
			users[r.k] = &goUser{root: r}
		}
	}
	for i, r := range all {
		u := users[r.k]
		if u == nil {
			continue
		}
		switch r.kind {
		case 1:
			u.profile = &all[i]
		case 2:
			o := &goOrder{row: r}
			u.orders = append(u.orders, o)
			orders[r.id] = o
		case 3:
			items = append(items, r)
		case 4:
			u.tags = append(u.tags, r)
		case 5:
			u.agg = &all[i]
		}
	}
	for _, it := range items {
		if o := orders[it.parent.Int64]; o != nil {
			o.items = append(o.items, it)
		}
	}
	byID := func(a, b goRow) int { return int(a.id - b.id) }
	docs := make([]Doc, 0, len(users))
	var b []byte
	for _, u := range users {
		slices.SortFunc(u.orders, func(a, b *goOrder) int { return int(a.row.id - b.row.id) })
		slices.SortFunc(u.tags, byID)
		r := u.root
		b = b[:0]
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, r.id, 10)
		b = append(b, `,"email":`...)
		b = jsonText(b, r.s1)
		b = append(b, `,"name":`...)
		b = jsonText(b, r.s2)
		b = append(b, `,"country":`...)
		b = jsonText(b, r.s3)
		b = append(b, `,"score":`...)
		b = strconv.AppendInt(b, r.i1.Int64, 10)
		b = append(b, `,"probe":`...)
		b = strconv.AppendInt(b, r.i2.Int64, 10)
		b = append(b, `,"created_at":`...)
		b = jsonTime(b, r.ts)
		b = append(b, `,"profile":`...)
		if p := u.profile; p == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, `{"bio":`...)
			b = jsonText(b, p.s1)
			b = append(b, `,"city":`...)
			b = jsonText(b, p.s2)
			b = append(b, `,"birthday":`...)
			b = jsonText(b, p.s3)
			b = append(b, '}')
		}
		b = append(b, `,"orders":[`...)
		for i, o := range u.orders {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendInt(b, o.row.id, 10)
			b = append(b, `,"status":`...)
			b = jsonText(b, o.row.s1)
			b = append(b, `,"total":`...)
			b = append(b, o.row.n1.String...)
			b = append(b, `,"created_at":`...)
			b = jsonTime(b, o.row.ts)
			b = append(b, `,"items":[`...)
			slices.SortFunc(o.items, byID)
			for j, it := range o.items {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"id":`...)
				b = strconv.AppendInt(b, it.id, 10)
				b = append(b, `,"quantity":`...)
				b = strconv.AppendInt(b, it.i1.Int64, 10)
				b = append(b, `,"unit_price":`...)
				b = append(b, it.n1.String...)
				b = append(b, `,"product":`...)
				if !it.i2.Valid {
					b = append(b, "null"...)
				} else {
					b = append(b, `{"id":`...)
					b = strconv.AppendInt(b, it.i2.Int64, 10)
					b = append(b, `,"name":`...)
					b = jsonText(b, it.s1)
					b = append(b, `,"price":`...)
					b = append(b, it.n2.String...)
					b = append(b, `,"category":`...)
					if !it.i3.Valid {
						b = append(b, "null"...)
					} else {
						b = append(b, `{"name":`...)
						b = jsonText(b, it.s2)
						b = append(b, '}')
					}
					b = append(b, '}')
				}
				b = append(b, '}')
			}
			b = append(b, "]}"...)
		}
		b = append(b, `],"tags":[`...)
		for i, t := range u.tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendInt(b, t.id, 10)
			b = append(b, `,"name":`...)
			b = jsonText(b, t.s1)
			b = append(b, '}')
		}
		b = append(b, `],"order_count":`...)
		if a := u.agg; a == nil {
			b = append(b, `0,"total_spent":null,"avg_order":null,"last_order_at":null}`...)
		} else {
			b = strconv.AppendInt(b, a.id, 10)
			b = append(b, `,"total_spent":`...)
			b = append(b, a.n1.String...)
			b = append(b, `,"avg_order":`...)
			b = append(b, a.n2.String...)
			b = append(b, `,"last_order_at":`...)
			b = jsonTime(b, a.ts)
			b = append(b, '}')
		}
		docs = append(docs, Doc{ID: strconv.FormatInt(r.id, 10), Body: slices.Clone(b)})
	}
	return docs, nil
}

// jsonText writes a string as Postgres's escape_json does.
func jsonText(b []byte, t pgtype.Text) []byte {
	if !t.Valid {
		return append(b, "null"...)
	}
	b = append(b, '"')
	for i := 0; i < len(t.String); i++ {
		switch c := t.String[i]; c {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			if c < 0x20 {
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}

func jsonTime(b []byte, t pgtype.Timestamptz) []byte {
	if !t.Valid {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.999999Z")
	return append(b, '"')
}

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func rawInt(b []byte) pgtype.Int8 {
	if b == nil {
		return pgtype.Int8{}
	}
	return pgtype.Int8{Int64: int64(binary.BigEndian.Uint64(b)), Valid: true}
}

func rawText(b []byte) pgtype.Text {
	if b == nil {
		return pgtype.Text{}
	}
	return pgtype.Text{String: string(b), Valid: true}
}

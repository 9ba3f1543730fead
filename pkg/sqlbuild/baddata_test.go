package sqlbuild_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

const badDDL = `
CREATE TABLE people (id int PRIMARY KEY, age text, score numeric, seen timestamp, code text);
CREATE TABLE visits (id int PRIMARY KEY, person_id int, weight numeric, born date);
INSERT INTO people VALUES
	(1, '30', 1.5, '2024-01-01', 'a'),
	(2, 'thirty', 1.5, '2024-01-01', 'b'),
	(3, '40', 'NaN', '2024-01-01', 'c'),
	(4, '50', 2, 'infinity', 'd'),
	(5, '60', 3, '2024-01-01', 'e'),
	(6, '99999', 3, '2024-01-01', 'f');
INSERT INTO visits VALUES (10, 1, 1, '2020-01-01'), (11, 5, 2, 'infinity'), (12, 6, 'Infinity', '2020-01-01');
`

const badSchema = `version: 1
table: people
primary_key: id
fields:
	- integer: id
	- object: stats
		fields:
			- integer: age
			- double: score
	- timestamp: seen
	- has_many: visits
		table: visits
		foreign_key: person_id
		primary_key: id
		fields:
			- date: born
	- sum: weight
		table: visits
		column: weight
		value_type: double
		foreign_key: person_id
`

// TestBadData checks that a value that cannot be rendered as its declared
// type fails only its own document, naming the field.
func TestBadData(t *testing.T) {
	pool := database(t, badDDL)
	ix := index(t, pool, badSchema)
	ctx := context.Background()

	check := func(t *testing.T, q sqlbuild.Querier) {
		docs, err := ix.Build(ctx, q, []string{"1", "2", "3", "4", "5", "6", "7"})
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		wantErr := map[string]string{
			"2": "stats.age",   // 'thirty' is no integer
			"3": "stats.score", // NaN
			"4": "seen",        // infinity
			"5": "visits.born", // infinity in a joined row
			"6": "weight",      // sum is Infinity
		}
		for _, d := range docs {
			field, bad := wantErr[d.ID]
			var derr *sqlbuild.DocError
			switch {
			case !bad && d.Err != nil:
				t.Errorf("document %s: unexpected error %v", d.ID, d.Err)
			case bad && !errors.As(d.Err, &derr):
				t.Errorf("document %s: error %v, want a *DocError", d.ID, d.Err)
			case bad && (derr.Field != field || derr.Index != "test" || derr.ID != d.ID):
				t.Errorf("document %s: %+v, want field %s", d.ID, derr, field)
			case bad && !strings.Contains(d.Err.Error(), `document "`+d.ID+`": field `+field+":"):
				t.Errorf("document %s: message %q does not name it", d.ID, d.Err)
			case bad && d.Body != nil:
				t.Errorf("document %s: body %s beside an error", d.ID, d.Body)
			}
		}
		if docs[0].Body == nil || docs[6].Body != nil || docs[6].Err != nil {
			t.Errorf("documents 1 and 7: %+v %+v, want a body and a tombstone", docs[0], docs[6])
		}
	}
	t.Run("pool", func(t *testing.T) { check(t, pool) })
	t.Run("transaction", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		check(t, tx)
		// The transaction is still usable.
		if _, err := ix.Build(ctx, tx, []string{"1"}); err != nil {
			t.Fatalf("Build after failures: %v", err)
		}
	})
	t.Run("bad key", func(t *testing.T) {
		docs, err := ix.Build(ctx, pool, []string{"1", "x"})
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		var derr *sqlbuild.DocError
		if docs[0].Err != nil || !errors.As(docs[1].Err, &derr) || derr.Field != "" {
			t.Errorf("got %+v, %+v; want document x to fail on its key", docs[0], docs[1])
		}
	})
}

func TestKeysAndCount(t *testing.T) {
	pool := database(t, `
		CREATE SCHEMA shop;
		CREATE TABLE shop.items (sku uuid PRIMARY KEY, hidden boolean NOT NULL DEFAULT false);
		INSERT INTO shop.items (sku, hidden)
			SELECT md5(i::text)::uuid, i % 10 = 0 FROM generate_series(1, 95) i;`)
	ix := index(t, pool, `version: 1
schema: shop
table: items
primary_key: sku
soft_delete: {column: hidden}
fields:
	- uuid: sku
`)
	ctx := context.Background()
	var all []string
	err := ix.KeyPages(ctx, pool, 20, func(keys []string) error {
		all = append(all, keys...)
		return nil
	})
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	if len(all) != 86 {
		t.Errorf("Keys listed %d keys, want the 86 documents", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("keys out of order: %s, %s", all[i-1], all[i])
		}
	}
	n, err := ix.Count(ctx, pool)
	if err != nil || n != 86 {
		t.Errorf("Count = %d, %v; want 86", n, err)
	}
	docs, err := ix.Build(ctx, pool, all[:3])
	if err != nil || len(docs) != 3 || docs[2].Body == nil {
		t.Errorf("Build of listed keys: %+v, %v", docs, err)
	}
}

// TestBadDataOutsideDocuments checks that joins and aggregates, read a
// whole batch at a time, render no row that is in no document: a bad value
// there fails nothing. Pet 11 is filtered out and card 21 is not its
// owner's first, and each has a child with a NaN; owner 2 is soft deleted
// and has a NaN pet.
func TestBadDataOutsideDocuments(t *testing.T) {
	pool := database(t, `
CREATE TABLE owners (id int PRIMARY KEY, gone boolean NOT NULL);
CREATE TABLE pets (id int PRIMARY KEY, owner_id int, kind text, weight numeric);
CREATE TABLE toys (id int PRIMARY KEY, pet_id int, price numeric);
CREATE TABLE cards (id int PRIMARY KEY, owner_id int, rank int);
CREATE TABLE marks (id int PRIMARY KEY, card_id int, score numeric);
INSERT INTO owners VALUES (1, false), (2, true), (3, false);
INSERT INTO pets VALUES (10, 1, 'dog', 1), (11, 1, 'rock', 'NaN'), (12, 2, 'dog', 'NaN'), (13, 3, 'cat', 'NaN');
INSERT INTO toys VALUES (100, 10, 1), (101, 11, 'NaN'), (102, 12, 'NaN');
INSERT INTO cards VALUES (20, 1, 1), (21, 1, 2);
INSERT INTO marks VALUES (200, 20, 1), (201, 21, 'NaN');
`)
	ix := index(t, pool, `version: 1
table: owners
primary_key: id
soft_delete: {column: gone}
fields:
	- integer: id
	- has_many: pets
		table: pets
		foreign_key: owner_id
		primary_key: id
		filters: [{column: kind, op: neq, value: rock}]
		fields:
			- double: weight
			- has_many: toys
				table: toys
				foreign_key: pet_id
				primary_key: id
				fields:
					- double: price
	- has_one: card
		table: cards
		foreign_key: owner_id
		primary_key: id
		order_by: [{column: rank}]
		fields:
			- integer: rank
			- has_many: marks
				table: marks
				foreign_key: card_id
				primary_key: id
				fields:
					- double: score
	- sum: weight
		table: pets
		foreign_key: owner_id
		column: weight
		value_type: double
		filters: [{column: kind, op: neq, value: rock}]
`)
	docs, err := ix.Build(context.Background(), pool, []string{"1", "2", "3"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := `{"id": 1, "pets": [{"weight": 1, "toys": [{"price": 1}]}], "card": {"rank": 1, "marks": [{"score": 1}]}, "weight": 1}`
	if d := docs[0]; d.Err != nil || canonical(t, string(d.Body)) != canonical(t, want) {
		t.Errorf("document 1: %s, %v; want %s", d.Body, d.Err, want)
	}
	if d := docs[1]; d.Err != nil || d.Body != nil {
		t.Errorf("document 2 (soft deleted): %s, %v; want a tombstone", d.Body, d.Err)
	}
	// Owner 3's own pet is NaN: its document, and only it, fails.
	var derr *sqlbuild.DocError
	if d := docs[2]; !errors.As(d.Err, &derr) || derr.Field != "pets.weight" {
		t.Errorf("document 3: %s, %v; want an error on pets.weight", d.Body, d.Err)
	}
}

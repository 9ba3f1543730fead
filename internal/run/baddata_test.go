package run_test

import (
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/harness"
)

// peopleSchema declares age an integer; the column is text, so a row
// holding "abc" cannot be built.
const peopleSchema = `version: 1
table: people
primary_key: id
fields:
  - integer: id
  - keyword: name
  - integer: age
`

// TestBadDataFollowsOnError: a value that does not fit its declared type
// is reported with index, document and field; under stop the run ends
// with that message, under skip the document is quarantined and the rest
// land.
func TestBadDataFollowsOnError(t *testing.T) {
	tests := []struct {
		policy string
	}{{"stop"}, {"skip"}}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			e := newE2E(t, `
				CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, age text);
				INSERT INTO people (name, age) VALUES ('ada', '36'), ('bob', 'abc'), ('cy', '41');`)
			cfg := e.WriteConfig(harness.Config{OnError: tt.policy, Indexes: []harness.Index{{Name: "people", Schema: peopleSchema}}})
			p := harness.Launch(t, e.Options(cfg, t.TempDir()))
			if tt.policy == "stop" {
				err := p.Failure()
				for _, want := range []string{`"people"`, `"2"`, "age", "on_error = stop"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %s", err, want)
					}
				}
				return
			}
			e.awaitDocs("the good documents", "people", func(d map[string]map[string]any) bool {
				_, bad := d["2"]
				return len(d) == 2 && !bad && d["3"]["age"] == float64(41)
			})
			if q := p.Stages().Meters.Quarantined.Snapshot()["people"]; q != 1 {
				t.Errorf("quarantined %d documents of people, want 1", q)
			}
			e.Exec(`UPDATE people SET age = '7' WHERE id = 2`)
			e.awaitDocs("the fixed document", "people", func(d map[string]map[string]any) bool { return d["2"]["age"] == float64(7) })
			p.StopClean()
		})
	}
}

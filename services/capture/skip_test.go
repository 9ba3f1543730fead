package capture

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestUnread(t *testing.T) {
	rel := &pglogrepl.RelationMessage{Columns: []*pglogrepl.RelationMessageColumn{
		{Name: "id", Flags: 1}, {Name: "status"}, {Name: "note"}, {Name: "body"},
	}}
	text := func(s string) *pglogrepl.TupleDataColumn {
		return &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(s)}
	}
	null := &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}
	toast := &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
	tuple := func(cols ...*pglogrepl.TupleDataColumn) *pglogrepl.TupleData {
		return &pglogrepl.TupleData{ColumnNum: uint16(len(cols)), Columns: cols}
	}
	read := map[string]bool{"id": true, "status": true, "body": true}
	row := tuple(text("1"), text("paid"), text("a"), text("big"))
	tests := []struct {
		name     string
		oldType  uint8
		old, new *pglogrepl.TupleData
		read     map[string]bool
		want     bool
	}{
		{"only an unread column changed", 'O', row, tuple(text("1"), text("paid"), text("b"), text("big")), read, true},
		{"nothing changed", 'O', row, row, read, true},
		{"a read column changed", 'O', row, tuple(text("1"), text("sent"), text("a"), text("big")), read, false},
		{"a read column became null", 'O', row, tuple(text("1"), null, text("a"), text("big")), read, false},
		{"a read null became a value", 'O', tuple(text("1"), null, text("a"), text("big")), row, read, false},
		{"the same bytes in binary are not taken for text", 'O', row,
			tuple(text("1"), &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeBinary, Data: []byte("paid")}, text("a"), text("big")), read, false},
		{"an unchanged TOASTed read column is unchanged", 'O', row, tuple(text("1"), text("paid"), text("b"), toast), read, true},
		{"an unchanged TOASTed column next to a changed read one", 'O', row, tuple(text("1"), text("sent"), text("b"), toast), read, false},
		{"an old value not sent is not taken for the new one", 'O', tuple(text("1"), text("paid"), text("a"), toast), row, read, false},
		{"only the old key (the key changed)", 'K', tuple(text("1"), null, null, null), tuple(text("2"), text("paid"), text("a"), text("big")), read, false},
		{"no old row (default identity)", 0, nil, tuple(text("1"), text("paid"), text("b"), text("big")), read, false},
		{"any column may be read", 'O', row, tuple(text("1"), text("paid"), text("b"), text("big")), nil, false},
		{"a row of another shape (a column added since)", 'O', tuple(text("1"), text("paid"), text("a")), row, read, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unread(rel, tt.oldType, tt.old, tt.new, tt.read); got != tt.want {
				t.Errorf("unread = %v, want %v", got, tt.want)
			}
		})
	}
}

package query

import (
	"fmt"
	"time"
)

// Index is one index as generated code declares it, with T its document
// type.
type Index[T any] struct {
	Logical string // the index's name in flusso.toml
	Hash    string // the hash of the schema the code was generated from
	// Tiebreak is the field holding the document's primary key, when it
	// sorts: All ends its sort with it so that pages neither skip nor
	// repeat documents.
	Tiebreak Field
}

// Name is the index's name under prefix.
func (ix Index[T]) Name(prefix string) string { return prefix + ix.Logical + "_" + ix.Hash }

func (ix Index[T]) logicalHash() (string, string) { return ix.Logical, ix.Hash }

// Field is the dotted path of a field or subfield of an index
// (orders.items.product.name, name.keyword).
type Field string

// Date is a date as flusso writes it: 2024-01-02.
type Date string

// Time parses the date (midnight UTC).
func (d Date) Time() (time.Time, error) {
	t, err := time.Parse(time.DateOnly, string(d))
	if err != nil {
		return time.Time{}, fmt.Errorf("query: date %q: %w", string(d), err)
	}
	return t, nil
}

// Timestamp is a timestamp as flusso writes it: 2024-01-02T03:04:05.123456Z
// for a timestamp with time zone (in UTC), without the Z for one without
// (then read as UTC too). The fraction is as long as needed.
type Timestamp string

// Time parses the timestamp.
func (s Timestamp) Time() (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, string(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("query: timestamp %q is neither 2006-01-02T15:04:05[.fraction] nor that with a zone", string(s))
}

// GeoPoint is a geo field made of a latitude and a longitude column.
type GeoPoint struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// LockVersion is the format version of flusso.lock this build writes and
// reads. It changes whenever the encoded Config changes shape.
const LockVersion = 1

const (
	lockFormat  = "flusso.lock"
	maxLockSize = 64 << 20
	lockMode    = 0o600
)

// ErrStaleLock reports a lock that does not hold what building the current
// config would write.
var ErrStaleLock = errors.New("lock is stale")

// lockFile is the on-disk layout: a small header, then the Config encoded on
// its own so the digest can cover exactly its bytes.
type lockFile struct {
	Format  string             `msgpack:"format"`
	Version int                `msgpack:"version"`
	Digest  string             `msgpack:"digest"` // hex SHA-256 of Config
	Config  msgpack.RawMessage `msgpack:"config"`
}

// MarshalLock encodes cfg, every schema inlined, as the bytes of a
// flusso.lock. The encoding is deterministic: the same config gives the same
// bytes on any machine, which is what makes a stale lock detectable. Values
// are stored as the file gave them: { env = "X" } stays a reference and
// nothing is read from the environment.
func MarshalLock(cfg *Config) ([]byte, error) {
	var body bytes.Buffer
	enc := msgpack.NewEncoder(&body)
	enc.SetSortMapKeys(true)
	// Integers in their smallest form whatever their Go type, so a decoded
	// lock (where they come back as int64) encodes to the same bytes.
	enc.UseCompactInts(true)
	if err := enc.Encode(portable(cfg)); err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	var out bytes.Buffer
	enc = msgpack.NewEncoder(&out)
	err := enc.Encode(lockFile{
		Format:  lockFormat,
		Version: LockVersion,
		Digest:  digestOf(body.Bytes()),
		Config:  body.Bytes(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	return out.Bytes(), nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// portable returns a copy of cfg whose file paths do not depend on where it
// was built: the config by its base name, each schema by its path as written
// in the config. They only ever appear in messages.
func portable(cfg *Config) *Config {
	c := *cfg
	c.Path = filepath.Base(cfg.Path)
	c.Indexes = slices.Clone(cfg.Indexes)
	for i, ix := range c.Indexes {
		if ix.Schema != nil {
			s := *ix.Schema
			s.File = ix.SchemaPath
			c.Indexes[i].Schema = &s
		}
	}
	return &c
}

// UnmarshalLock decodes the bytes of a flusso.lock, checking its format,
// version and digest.
func UnmarshalLock(data []byte) (*Config, error) {
	var lf lockFile
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&lf); err != nil || lf.Format != lockFormat {
		return nil, errors.New("not a flusso.lock file (build one with flusso build)")
	}
	if lf.Version != LockVersion {
		return nil, fmt.Errorf("lock format version %d is not supported by this flusso (it reads version %d); rebuild the lock with flusso build", lf.Version, LockVersion)
	}
	if digestOf(lf.Config) != lf.Digest {
		return nil, errors.New("lock is corrupt: its content does not match its digest; rebuild it with flusso build")
	}
	var cfg Config
	dec = msgpack.NewDecoder(bytes.NewReader(lf.Config))
	dec.DisallowUnknownFields(true)
	dec.UseLooseInterfaceDecoding(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("lock is corrupt: %w; rebuild it with flusso build", err)
	}
	normalizeInts(reflect.ValueOf(&cfg))
	return &cfg, nil
}

// WriteLock writes the lock of cfg to path, replacing the file atomically so
// a reader never sees half a lock. The file is readable by its owner only,
// whatever mode a previous lock had: a literal secret in the config travels
// in the lock.
func WriteLock(path string, cfg *Config) error {
	data, err := MarshalLock(cfg)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".flusso.lock-*")
	if err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this is a no-op
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write lock %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write lock %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), lockMode); err != nil {
		return fmt.Errorf("write lock %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write lock %s: %w", path, err)
	}
	return nil
}

// ReadLock reads the flusso.lock at path.
func ReadLock(path string) (*Config, error) {
	data, err := readFile("lock", path, maxLockSize)
	if err != nil {
		return nil, err
	}
	cfg, err := UnmarshalLock(data)
	if err != nil {
		return nil, fmt.Errorf("read lock %s: %w", path, err)
	}
	return cfg, nil
}

// CheckLock reports whether the lock at path is what building cfg would
// write now. A lock is stale when its bytes differ: any change to the config
// or to a schema file (including the lines fields sit on, which messages
// cite) makes it stale, and so does a lock written by a flusso whose
// encoding differs. The error wraps ErrStaleLock in that case, or the read
// error (fs.ErrNotExist for a missing lock).
func CheckLock(path string, cfg *Config) error {
	want, err := MarshalLock(cfg)
	if err != nil {
		return err
	}
	have, err := readFile("lock", path, maxLockSize)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, want) {
		return fmt.Errorf("%s: %w: it was not built from the current %s", path, ErrStaleLock, filepath.Base(cfg.Path))
	}
	return nil
}

// normalizeInts rewrites the integers held in interface values (schema
// options, defaults, filter operands) as int64: msgpack keeps only the
// smallest encoding of a number, so a decoded 300 would otherwise come back
// as uint64 and a 3 as int64.
func normalizeInts(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalizeInts(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalizeInts(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			normalizeInts(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.Interface && !e.IsNil() {
				c := reflect.New(e.Type()).Elem()
				c.Set(e)
				normalizeInts(c)
				v.SetMapIndex(k, c)
			} else {
				normalizeInts(e)
			}
		}
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		switch x := v.Elem().Interface().(type) {
		case uint64:
			if x <= math.MaxInt64 && v.CanSet() {
				v.Set(reflect.ValueOf(int64(x)))
			}
		case map[string]any, []any:
			normalizeInts(v.Elem())
		}
	}
}

package sqlbuild

// BuildSQL is the build statement of a prepared index.
func BuildSQL(x *Index) string { return x.build.sql }

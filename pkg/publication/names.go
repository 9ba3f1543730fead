package publication

import (
	"fmt"
	"regexp"
)

var (
	// slotRE is what Postgres accepts as a replication slot name.
	slotRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	// nameRE is an unquoted identifier in lower case: the replication
	// protocol reads publication_names folding case, so "Pub" would name
	// another publication than the one created.
	nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_$]{0,62}$`)
)

// CheckSlot refuses a replication slot name Postgres would refuse; the error
// states the rule.
func CheckSlot(name string) error {
	if !slotRE.MatchString(name) {
		return fmt.Errorf("%q: a replication slot name is 1 to 63 lowercase letters, digits and underscores", name)
	}
	return nil
}

// CheckName refuses a publication name the replication protocol would not
// reach as given; the error states the rule.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q: a publication name is an unquoted Postgres identifier: a lowercase letter or underscore, "+
			"then up to 62 lowercase letters, digits, underscores or $", name)
	}
	return nil
}

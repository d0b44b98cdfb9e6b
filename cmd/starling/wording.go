package main

import (
	"fmt"
	"regexp"
)

// counted is "1 field" or "3 fields": a number with the noun that agrees
// with it.
func counted(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// pkgPrefix matches the package names Go errors carry at the start of
// each wrapped part ("entity: no such entity", "api: no running node").
var pkgPrefix = regexp.MustCompile(`(^|: |\()(api|crdt|election|entity|httpapi|node|nodestate|p2p|statesync): `)

// cleanMessage is err's message for a person: without the package
// prefixes the wrapped parts carry ("new parent: entity: no such entity"
// reads "new parent: no such entity"). The error itself keeps its
// wrapping, so errors.Is still works on it; only what is printed changes.
func cleanMessage(err error) string {
	return pkgPrefix.ReplaceAllString(err.Error(), "$1")
}

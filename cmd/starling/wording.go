package main

import "fmt"

// counted is "1 field" or "3 fields": a number with the noun that agrees
// with it.
func counted(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags go anywhere on the command line, as kubectl
// does: "starling get /F --data D", "starling status --log-level debug
// --data D" and "starling --data D status" all mean "starling
// --log-level debug status --data D /F". urfave/cli v2 parses each
// level with Go's flag package, which stops at the first argument, and
// has no option for interspersed flags (v3's parser would, but moving
// every command to v3's API is no small change); so the arguments are
// put in the order it wants before it sees them: each flag is moved to
// the deepest command on the path that defines it (global flags to the
// front), arguments after them. An unknown flag goes to the command
// itself, so that its error names that command's --help. After "--"
// nothing moves (lead's command line); a value that starts with '-' is
// given after "--" ("starling set D /F note -- -x"); "-5" is a number,
// not a flag. "starling help CMD [SUB]" is "starling CMD [SUB] --help".
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	type flagArg struct {
		name string
		toks []string
	}
	var (
		path  []*cli.Command
		subs  = app.Commands
		flags []flagArg
		pos   []string
		tail  []string
		dash  bool
		help  bool
		rest  = args[1:]
	)
	levelFlags := func(k int) []cli.Flag { // 0: the app, k: path[k-1]
		if k == 0 {
			return app.Flags
		}
		return path[k-1].Flags
	}
	for i := 0; i < len(rest); i++ {
		t := rest[i]
		if t == "--" {
			dash, tail = true, rest[i+1:]
			break
		}
		if len(pos) > 0 && len(path) > 0 && strings.HasPrefix(path[len(path)-1].ArgsUsage, "--") {
			// A command line of its own (lead's CMD ARGS...): from its
			// first word on, nothing is ours, even without "--".
			dash, tail = true, rest[i:]
			break
		}
		if isFlagToken(t) {
			name, _, hasVal := strings.Cut(strings.TrimLeft(t, "-"), "=")
			fa := flagArg{name: name, toks: []string{t}}
			if !hasVal && takesValue(name, path, subs, app.Flags) && i+1 < len(rest) {
				i++
				fa.toks = append(fa.toks, rest[i])
			}
			flags = append(flags, fa)
			continue
		}
		if len(pos) == 0 {
			if t == "help" && len(path) == 0 && !help && findCommand(subs, t) == nil {
				help = true
				continue
			}
			if c := findCommand(subs, t); c != nil {
				path = append(path, c)
				subs = c.Subcommands
				continue
			}
		}
		pos = append(pos, t)
	}
	placed := make([][]string, len(path)+1)
	for _, f := range flags {
		at := len(path) // unknown flags and --help: the command itself
		for k := len(path); k >= 0; k-- {
			if hasFlag(levelFlags(k), f.name) {
				at = k
				break
			}
		}
		placed[at] = append(placed[at], f.toks...)
	}
	out := append([]string{args[0]}, placed[0]...)
	for k, c := range path {
		out = append(out, c.Name)
		out = append(out, placed[k+1]...)
	}
	if help && len(pos) == 0 {
		out = append(out, "--help")
	}
	// Go's flag package stops at the first argument; "--" keeps a first
	// argument like "-5" from being read as a flag, and was given anyway.
	if dash || len(pos) > 0 && strings.HasPrefix(pos[0], "-") && pos[0] != "-" {
		out = append(out, "--")
	}
	out = append(out, pos...)
	return append(out, tail...)
}

// isFlagToken: "-x", "--name", "--name=v"; not "-", "--" or "-5".
func isFlagToken(t string) bool {
	s := strings.TrimPrefix(strings.TrimPrefix(t, "-"), "-")
	if len(t) < 2 || t[0] != '-' || s == "" {
		return false
	}
	c := s[0]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// takesValue reports whether flag name reads the next argument: as the
// path so far defines it, else as the commands below define it, else as
// the app's flags do; an unknown flag takes none.
func takesValue(name string, path []*cli.Command, subs []*cli.Command, appFlags []cli.Flag) bool {
	if name == "h" || name == "help" {
		return false
	}
	for k := len(path) - 1; k >= 0; k-- {
		if f := findFlag(path[k].Flags, name); f != nil {
			return !isBoolFlag(f)
		}
	}
	if f := findFlag(appFlags, name); f != nil {
		return !isBoolFlag(f)
	}
	var below func(cmds []*cli.Command) cli.Flag
	below = func(cmds []*cli.Command) cli.Flag {
		for _, c := range cmds {
			if f := findFlag(c.Flags, name); f != nil {
				return f
			}
			if f := below(c.Subcommands); f != nil {
				return f
			}
		}
		return nil
	}
	if f := below(subs); f != nil {
		return !isBoolFlag(f)
	}
	return false
}

func isBoolFlag(f cli.Flag) bool {
	_, ok := f.(*cli.BoolFlag)
	return ok
}

func findFlag(fs []cli.Flag, name string) cli.Flag {
	for _, f := range fs {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// suggest returns the candidate nearest to typed, if it is near enough
// to be a typo (a few edits, or typed is its start), else "".
func suggest(typed string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := editDistance(strings.ToLower(typed), strings.ToLower(c))
		if len(typed) >= 2 && strings.HasPrefix(c, typed) {
			d = 1
		}
		if d <= max(1, len(typed)/3) && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMeanCommand is " (did you mean X?)" for a mistyped command name.
func didYouMeanCommand(typed string, cmds []*cli.Command) string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Names()...)
		}
	}
	if s := suggest(typed, names); s != "" {
		return " (did you mean " + s + "?)"
	}
	return ""
}

// didYouMeanFlag is " (did you mean --X?)" for a mistyped flag.
func didYouMeanFlag(typed string, fs []cli.Flag) string {
	var names []string
	for _, f := range fs {
		names = append(names, f.Names()...)
	}
	s := suggest(strings.TrimLeft(typed, "-"), names)
	switch {
	case s == "":
		return ""
	case len(s) == 1:
		return " (did you mean -" + s + "?)"
	}
	return " (did you mean --" + s + "?)"
}

// editDistance is the edit distance of two short strings, a swap of two
// neighbours counting as one edit ("gte" is one from "get").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// flagSuggestion is didYouMeanFlag for the flag package's "flag provided
// but not defined: -X" of c's command (the app's when c is the root).
func flagSuggestion(c *cli.Context, err error) string {
	typed, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return ""
	}
	fs := c.App.Flags
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		fs = c.Command.Flags
	}
	return didYouMeanFlag(typed, fs)
}

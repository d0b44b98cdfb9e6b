package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// complete runs `starling ARGS... --generate-bash-completion` in-process
// and returns the words offered. cli reads the flag being completed from
// os.Args, so the test sets it as the shell would.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	full := append(append([]string{"starling"}, args...), "--generate-bash-completion")
	saved := os.Args
	os.Args = full
	defer func() { os.Args = saved }()
	r := runApp(t, "", full[1:]...)
	if r.code != 0 {
		t.Fatalf("%v: %+v", full, r)
	}
	return strings.Fields(r.stdout)
}

func TestCompletionWords(t *testing.T) {
	top := complete(t)
	for _, w := range []string{"run", "cluster", "version", "completion", "get", "set"} {
		if !slices.Contains(top, w) {
			t.Errorf("top-level completion lacks %q: %v", w, top)
		}
	}
	if chaos := complete(t, "chaos"); slices.Contains(chaos, "adversary") || len(chaos) == 0 {
		t.Errorf("chaos completion offers the hidden adversary, or nothing: %v", chaos)
	}
	sub := complete(t, "cluster")
	for _, w := range []string{"status", "peers", "add", "remove"} {
		if !slices.Contains(sub, w) {
			t.Errorf("cluster completion lacks %q: %v", w, sub)
		}
	}
	flags := complete(t, "cluster", "peers", "--js")
	if !slices.Equal(flags, []string{"--json"}) {
		t.Errorf("cluster peers --js completes to %v, want [--json]", flags)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "complete -o bashdefault -o default -o nospace -F _starling_bash_autocomplete starling"},
		{"zsh", "compdef _starling_zsh_autocomplete starling"},
		{"fish", "complete -c starling -n '__fish_seen_subcommand_from peers' -f -l json"},
	} {
		r := runApp(t, "", "completion", tc.shell)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("completion %s: exit %d, lacks %q:\n%.400s%s", tc.shell, r.code, tc.want, r.stdout, r.stderr)
		}
	}
	if r := runApp(t, "", "completion", "tcsh"); r.code != exitUsage || !strings.Contains(r.stderr, "use bash, zsh or fish") {
		t.Errorf("completion tcsh: %+v", r)
	}
	if r := runApp(t, "", "completion"); r.code != exitUsage {
		t.Errorf("completion without a shell: %+v", r)
	}
}

// TestCompletionInShells sources the scripts in a real bash and fish
// (each skipped when not installed) with a starling binary on PATH and
// completes a command and a flag. (zsh's needs an interactive
// completion context; its script is cli's, checked for syntax with
// zsh -n when zsh is there.)
func TestCompletionInShells(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "starling"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Run("bash", func(t *testing.T) { completeInBash(t, env) })
	t.Run("fish", func(t *testing.T) {
		fish, err := exec.LookPath("fish")
		if err != nil {
			t.Skip("no fish:", err)
		}
		cmd := exec.Command(fish, "--no-config", "-c", `starling completion fish | source; complete -C"starling clu"; complete -C"starling cluster peers --js"`)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "cluster\t") || !strings.HasPrefix(lines[1], "--json\t") {
			t.Errorf("fish completion:\n%s", out)
		}
	})
	t.Run("zsh syntax", func(t *testing.T) {
		zsh, err := exec.LookPath("zsh")
		if err != nil {
			t.Skip("no zsh:", err)
		}
		script := filepath.Join(t.TempDir(), "_starling")
		if err := os.WriteFile(script, []byte(zshCompletion), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	})
}

func completeInBash(t *testing.T, env []string) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash:", err)
	}
	script := `source <(starling completion bash)
COMP_WORDS=(starling clu); COMP_CWORD=1; _starling_bash_autocomplete; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(starling cluster peers --js); COMP_CWORD=3; _starling_bash_autocomplete; echo "2:${COMPREPLY[*]}"`
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	if got, want := string(out), "1:cluster\n2:--json\n"; got != want {
		t.Errorf("bash completion:\n%s\nwant:\n%s", got, want)
	}
}

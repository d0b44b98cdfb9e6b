package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion. urfave/cli v2 answers `starling ARGS...
// --generate-bash-completion` with the commands or flags that may follow
// ARGS (App.EnableBashCompletion); the bash and zsh scripts below are
// cli's own (autocomplete/ in its module) with the program name filled
// in, and fish gets cli's ToFishCompletion, which lists every command
// and flag statically.

const bashCompletion = `# bash completion for starling
# Load it with:  source <(starling completion bash)
_starling_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts words cword
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      words=("${COMP_WORDS[@]}")
      cword=$COMP_CWORD
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      opts=$("${words[@]}" "${cur}" --generate-bash-completion 2>/dev/null)
    else
      opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
    fi
    COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
    return 0
  fi
}
complete -o bashdefault -o default -o nospace -F _starling_bash_autocomplete starling
`

const zshCompletion = `#compdef starling
# zsh completion for starling
# Load it with:  source <(starling completion zsh)
# or save it as _starling in a directory of $fpath.
_starling_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _starling_zsh_autocomplete starling
`

func (e *cmdEnv) completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		UsageText: "starling completion bash|zsh|fish",
		Description: `Prints a script that completes starling's commands and flags in the shell.

   bash:  source <(starling completion bash)       # or save to /etc/bash_completion.d/starling
   zsh:   source <(starling completion zsh)        # or save as _starling in a directory of $fpath
   fish:  starling completion fish > ~/.config/fish/completions/starling.fish

bash and zsh ask the binary for the words that may follow (so they follow the
installed version); fish gets a static list of every command and flag.`,
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, 1, "a shell: bash, zsh or fish"); err != nil {
				return err
			}
			switch sh := c.Args().First(); strings.ToLower(sh) {
			case "bash":
				_, err := fmt.Fprint(e.stdout, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(e.stdout, zshCompletion)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				_, err = fmt.Fprint(e.stdout, s)
				return err
			default:
				return usageErrorf(c, "unknown shell %q: use bash, zsh or fish", sh)
			}
		},
	}
}

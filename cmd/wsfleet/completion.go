package main

// Shell completion. `wsfleet completion bash|zsh|fish` prints a script for
// the shell; the script calls the hidden `wsfleet __complete WORD…` with
// the words typed after wsfleet (the last one the word being completed,
// possibly empty), which prints the candidates, one a line ("value" or
// "value<TAB>description"), and last a directive line: ":0" the candidates
// only, ":1" let the shell complete file names, ":2" directory names. The
// commands and the flags come from the commands' own flag sets
// (commandFlags), the change ids of -c from the state location the command
// line names and from the plan files at hand.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"wsfleet/rollout"
)

func init() {
	register("completion", "print a shell completion script for bash, zsh or fish (commands, flags, change ids)",
		"source <(wsfleet completion bash)\nwsfleet completion zsh > \"${fpath[1]}/_wsfleet\"\nwsfleet completion fish > ~/.config/fish/completions/wsfleet.fish",
		runCompletion)
}

// completionScripts are the scripts `wsfleet completion SHELL` prints.
var completionScripts = map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("completion", stderr)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		script, ok := completionScripts[args[0]]
		if !ok {
			return fmt.Errorf("%w: unknown shell %q: give bash, zsh or fish", errUsage, args[0])
		}
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		_, err := io.WriteString(stdout, script)
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return fmt.Errorf("%w: give the shell: wsfleet completion bash|zsh|fish", errUsage)
}

// subcommands are the words a command takes before its flags: state's
// push, completion's shell. commandFlags gives a command its first
// subcommand, so that it reaches its flags.
var subcommands = map[string][]string{
	"state":      {"push"},
	"completion": {"bash", "fish", "zsh"},
}

// completeCommand is the hidden command the scripts call.
const completeCommand = "__complete"

// flagDescriber is the stderr commandFlags gives a command: parseFlags
// recognises it, keeps the command's flag set in fs and stops the command
// with errDescribed before it parses anything or runs.
type flagDescriber struct{ fs *flag.FlagSet }

func (*flagDescriber) Write(p []byte) (int, error) { return len(p), nil }

var errDescribed = errors.New("flags described")

// commandFlags returns the flag set command name parses, without running
// it: the command defines its flags and stops in parseFlags (command.run's
// contract). sub is the subcommand for a command that has them.
func commandFlags(name string, sub ...string) (*flag.FlagSet, error) {
	cmd, ok := commands[name]
	if !ok {
		return nil, fmt.Errorf("no command %q", name)
	}
	if len(sub) == 0 && len(subcommands[name]) > 0 {
		sub = subcommands[name][:1]
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing may wait on it
	d := &flagDescriber{}
	err := cmd.run(ctx, sub, io.Discard, d)
	if !errors.Is(err, errDescribed) || d.fs == nil {
		return nil, fmt.Errorf("flags of %s: it returned %v before parsing its flags", name, err)
	}
	return d.fs, nil
}

// completer answers `wsfleet __complete`. Its zero value reads the real
// state and the working directory's plan files.
type completer struct {
	// changes lists the change ids held where loc says; nil:
	// listChanges. It is abandoned after timeout.
	changes func(ctx context.Context, loc stateLocation) ([]string, error)
	// planFiles lists the plan files of the working directory whose
	// change: key is offered as a change id; nil: *.yaml and *.yml.
	planFiles func() []string
	// readFile reads a plan file; nil: os.ReadFile.
	readFile func(string) ([]byte, error)
	// timeout bounds the wait for the state; 0: 2s. Completion that
	// cannot reach the state offers what the plan files name, silently.
	timeout time.Duration
}

// stateLocation is what a command line says about where its changes live:
// --state, --state-dir (empty: the default), --endpoint and --region.
type stateLocation struct {
	state, stateDir, endpoint, region string
}

// Directives: the last line of `wsfleet __complete`.
const (
	directiveNone  = ":0"
	directiveFiles = ":1"
	directiveDirs  = ":2"
)

// runComplete prints the candidates for the last of words, the words
// typed after wsfleet. It never fails: a completion prints nothing rather
// than an error.
func runComplete(ctx context.Context, words []string, stdout io.Writer, c completer) int {
	cands, directive := c.complete(ctx, words)
	for _, cand := range cands {
		fmt.Fprintln(stdout, cand)
	}
	fmt.Fprintln(stdout, directive)
	return 0
}

// complete returns the candidates for the last of words and the directive:
// the commands, a command's subcommands, its flags, or a flag's value.
func (c completer) complete(ctx context.Context, words []string) ([]string, string) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, prev := words[len(words)-1], words[:len(words)-1]
	if len(prev) == 0 {
		return completeCommands(cur), directiveNone
	}
	name, rest := prev[0], prev[1:]
	if _, ok := commands[name]; !ok {
		return nil, directiveNone
	}
	var sub []string
	if subs := subcommands[name]; len(subs) > 0 {
		if len(rest) == 0 {
			return withPrefix(subs, cur), directiveNone
		}
		if !slices.Contains(subs, rest[0]) {
			return nil, directiveNone
		}
		sub, rest = rest[:1], rest[1:]
	}
	fs, err := commandFlags(name, sub...)
	if err != nil {
		return nil, directiveNone
	}
	values := typedFlags(fs, rest)
	if len(rest) > 0 {
		if f := valueFlag(fs, rest[len(rest)-1]); f != nil {
			return c.completeValue(ctx, f, values, cur)
		}
	}
	if strings.Contains(cur, "=") || (cur != "" && !strings.HasPrefix(cur, "-")) {
		return nil, directiveNone // no command takes arguments after its flags
	}
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		out = append(out, flagWord(f.Name)+"\t"+firstLine(f.Usage))
	})
	return withPrefix(out, cur), directiveNone
}

// completeCommands offers the commands, and the top-level flags when cur
// starts with a dash.
func completeCommands(cur string) []string {
	var out []string
	for name, cmd := range commands {
		out = append(out, name+"\t"+firstLine(cmd.summary))
	}
	out = append(out, "help\tlist the commands")
	if strings.HasPrefix(cur, "-") {
		out = append(out, "--help\tlist the commands", "--version\tprint the version")
	}
	sort.Strings(out)
	return withPrefix(out, cur)
}

// completeValue completes the value of flag f: change ids for -c,
// directories for a flag naming one, nothing for a number or a duration,
// file names for the rest.
func (c completer) completeValue(ctx context.Context, f *flag.Flag, values map[string]string, cur string) ([]string, string) {
	switch {
	case f.Name == "c":
		return withPrefix(c.changeIDs(ctx, values), cur), directiveNone
	case strings.HasSuffix(f.Name, "-dir") || f.Name == "out":
		return nil, directiveDirs
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, text := g.Get().(string); !text {
			return nil, directiveNone
		}
	}
	return nil, directiveFiles
}

// changeIDs are the changes held in the state the command line names
// (--state, else --state-dir or its default: where the command will look)
// and the change: keys of the plan files in the working directory, sorted,
// each once.
func (c completer) changeIDs(ctx context.Context, values map[string]string) []string {
	readFile, planFiles, changes, timeout := c.readFile, c.planFiles, c.changes, c.timeout
	if readFile == nil {
		readFile = os.ReadFile
	}
	if planFiles == nil {
		planFiles = workingDirPlans
	}
	if changes == nil {
		changes = listChanges
	}
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	ids := map[string]bool{}
	loc := stateLocation{state: values["state"], stateDir: values["state-dir"], endpoint: values["endpoint"], region: values["region"]}
	for _, file := range planFiles() {
		if id, ok := planChange(readFile, file); ok {
			ids[id] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct{ ids []string }
	done := make(chan result, 1)
	go func() {
		found, err := changes(ctx, loc)
		if err != nil {
			found = nil // unreachable or unreadable: offer the plan files' ids only
		}
		done <- result{found}
	}()
	select {
	case r := <-done:
		for _, id := range r.ids {
			if validChangeID(id) {
				ids[id] = true
			}
		}
	case <-ctx.Done():
		// The state did not answer in time; the process exits after
		// printing, taking the abandoned call with it.
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// planChange reads the change: key of file, if it is a small YAML
// mapping whose change is a valid id; whether the rest is a valid plan
// does not matter here.
func planChange(readFile func(string) ([]byte, error), file string) (string, bool) {
	var p struct {
		Change string `yaml:"change"`
	}
	data, err := readFile(file)
	if err != nil || len(data) > 1<<20 {
		return "", false
	}
	if err := yaml.Unmarshal(data, &p); err != nil || !validChangeID(p.Change) {
		return "", false
	}
	return p.Change, true
}

// workingDirPlans are the YAML files of the working directory, at most
// 100 of them.
func workingDirPlans() []string {
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	if len(out) > 100 {
		out = out[:100]
	}
	return out
}

// validChangeID reports whether id could be a change id: a plan's rule
// (letters, digits, '.', '_', '-'; at most 64), so that nothing else
// found in a YAML file is offered.
func validChangeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// listChanges lists the change ids held where loc says, as `wsfleet
// changes` would, but without creating the state directory and within
// ctx's deadline.
func listChanges(ctx context.Context, loc stateLocation) ([]string, error) {
	var store rollout.Backend
	wait := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	dir := loc.stateDir
	if loc.state != "" {
		u, err := rollout.ParseStateURL(loc.state)
		if err != nil {
			return nil, fmt.Errorf("list changes: %w", err)
		}
		dir = u.Dir
		if u.S3() {
			f := &roFlags{endpoint: loc.endpoint, region: loc.region}
			b, err := storeAt(ctx, u, f, nil)
			if err != nil {
				return nil, fmt.Errorf("list changes: %w", err)
			}
			if obj, ok := b.(*rollout.ObjectStore); ok {
				obj.Timeout = wait
			}
			store = b
		}
	}
	if store == nil {
		if dir == "" {
			dir = defaultStateDir()
		}
		if _, err := os.Stat(filepath.Join(dir, "rollouts.db")); err != nil {
			return nil, nil // no changes there yet
		}
		store = &rollout.Store{Dir: dir, Timeout: wait}
	}
	all, err := store.List()
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	ids := make([]string, 0, len(all))
	for _, st := range all {
		ids = append(ids, st.Change)
	}
	return ids, nil
}

// typedFlags are the values of the flags already on the command line
// words (a command's words after its name), read leniently: a completion
// reads a line being typed.
func typedFlags(fs *flag.FlagSet, words []string) map[string]string {
	values := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			break
		}
		if !strings.HasPrefix(w, "-") || w == "-" {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if !hasValue && !isBoolFlag(f) {
			if i+1 >= len(words) {
				break
			}
			i++
			value = words[i]
		}
		values[name] = value
	}
	return values
}

// valueFlag is the flag that word names if word is a flag awaiting its
// value in the next word.
func valueFlag(fs *flag.FlagSet, word string) *flag.Flag {
	if !strings.HasPrefix(word, "-") || strings.Contains(word, "=") {
		return nil
	}
	f := fs.Lookup(strings.TrimLeft(word, "-"))
	if f == nil || isBoolFlag(f) {
		return nil
	}
	return f
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagWord is how the docs write a flag: -c, --state.
func flagWord(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// withPrefix keeps the candidates (value, or value<TAB>description) whose
// value starts with prefix.
func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// The scripts are thin: each passes the words typed to `wsfleet
// __complete` and hands its answer to the shell's own machinery.

const bashCompletion = `# bash completion for wsfleet (bash 4 or later).
# This shell:  source <(wsfleet completion bash)
# Every shell: wsfleet completion bash > ~/.local/share/bash-completion/completions/wsfleet
# It asks ` + "`wsfleet __complete WORD...`" + ` for the candidates; its last line is a
# directive: :0 the candidates only, :1 file names, :2 directory names.
_wsfleet_complete() {
    local line=${COMP_LINE:0:COMP_POINT}
    local -a words
    read -r -a words <<<"$line"
    # A blank before the cursor starts a new, empty word.
    if [[ ${#words[@]} -eq 0 || $line == *[[:space:]] ]]; then
        words+=("")
    fi
    local cur=${words[${#words[@]}-1]}
    local out
    out=$("${words[0]}" __complete "${words[@]:1}" 2>/dev/null) || return 0
    local -a lines
    mapfile -t lines <<<"$out"
    local n=${#lines[@]}
    COMPREPLY=()
    case ${lines[n-1]} in
    :1)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        ;;
    :2)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        ;;
    *)
        local i
        for ((i = 0; i < n - 1; i++)); do
            COMPREPLY+=("${lines[i]%%$'\t'*}")
        done
        ;;
    esac
}
complete -F _wsfleet_complete wsfleet
`

const zshCompletion = `#compdef wsfleet
# zsh completion for wsfleet.
# This shell (after compinit): source <(wsfleet completion zsh)
# Every shell: wsfleet completion zsh > "${fpath[1]}/_wsfleet"
# It asks ` + "`wsfleet __complete WORD...`" + ` for the candidates; its last line is a
# directive: :0 the candidates only, :1 file names, :2 directory names.
_wsfleet() {
  local out directive line
  local -a lines cands
  out=$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null) || return 1
  lines=("${(@f)out}")
  directive=${lines[-1]}
  lines[-1]=()
  case $directive in
    :1) _files ;;
    :2) _files -/ ;;
    *)
      for line in "${lines[@]}"; do
        [[ -n $line ]] || continue
        if [[ $line == *$'\t'* ]]; then
          cands+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
        else
          cands+=("${line//:/\\:}")
        fi
      done
      (( ${#cands} )) && _describe -t values wsfleet cands
      ;;
  esac
}
if [[ $funcstack[1] == _wsfleet ]]; then
  _wsfleet "$@"
else
  compdef _wsfleet wsfleet
fi
`

const fishCompletion = `# fish completion for wsfleet.
# This shell:  wsfleet completion fish | source
# Every shell: wsfleet completion fish > ~/.config/fish/completions/wsfleet.fish
# It asks ` + "`wsfleet __complete WORD...`" + ` for the candidates; its last line is a
# directive: :0 the candidates only, :1 file names, :2 directory names.
function __wsfleet_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l cmd $tokens[1]
    set -e tokens[1]
    set -l out ($cmd __complete $tokens "$current" 2>/dev/null)
    or return
    test (count $out) -gt 0
    or return
    set -l directive $out[-1]
    set -e out[-1]
    switch $directive
        case :1
            __fish_complete_path "$current"
        case :2
            __fish_complete_directories "$current"
        case '*'
            printf '%s\n' $out
    end
end
complete -c wsfleet -f -a '(__wsfleet_complete)'
`

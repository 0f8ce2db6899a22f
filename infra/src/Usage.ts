// The usage lines of command groups, shared by their modules and by `sam help`, which must not load
// those modules to print them (a command loads only what it needs, cli.ts).

export const AGENT_USAGE_LINES = `  agents [list]          the agents, whether this machine has them installed, and your credentials
  agents install [ID…]   install agents (all real ones by default) from the npm registry into the node cache
  agents credential set ID [--kind api-key|oauth-token|auth-file] [--file F]
                         store your credential for an agent (read from F, else stdin); encrypted, never shown again
  agents credential rm ID
  agents profile list|create --project P --name N --agent ID [--model M] [--permission ask|allow-edits|allow-all]
                         [--mode task|conversation] [--prompt-append TEXT]
                         [--node local|hetzner] [--size small|medium|large] [--location fsn1|nbg1|hel1|ash|hil]
                         | rm --project P prof_…
  agents env set|rm --project P [--profile prof_…] KEY [VALUE] [--secret]
                         runtime variables of a project or profile (a profile's wins on the same key)`

export const CLOUD_USAGE_LINES = `  cloud hetzner set-token  store your Hetzner Cloud API token (read from stdin; checked with Hetzner, encrypted,
                         never shown again); profiles with --node hetzner then run on servers in that project
  cloud hetzner status | cloud hetzner remove`

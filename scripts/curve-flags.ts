/**
 * The CURVE flags of the CLI, with the same names everywhere (docs/operations.md, "Keys and authentication"):
 * the broker's own on `zerve broker` and `zerve up`, the connecting side's on every command that
 * connects to a broker (any command with `--broker` or `--connect`). Values resolve like every option:
 * flag, `ZERVE_*` variable, config file (shared/config.ts `CurveOptions`).
 */
import { Option, type Command } from 'commander';
import { CLIENT_AUTH_MODES } from '../shared/curve-socket-options.ts';

const clientAuth = () =>
  new Option('--client-auth <mode>', "the broker's client socket: plain, curve (any key) or allowlist (default: plain)").choices(CLIENT_AUTH_MODES);

/** Adds the broker's CURVE flags. */
export function addBrokerCurveFlags(command: Command): Command {
  return command
    .option('--curve-key <file>', "the broker's secret key file (NAME.key from zerve keys generate); turns CURVE on for the worker socket")
    .option('--authorized-workers <path>', 'worker public keys admitted: a file of keys or a folder of .pub files (reloaded on SIGHUP and on change)')
    .addOption(clientAuth())
    .option('--authorized-clients <path>', 'client public keys admitted with --client-auth allowlist: a file or a folder of .pub files')
    .option('--client-users <file>', 'client keys mapped to users, lines "<key> <user> [role]" or "<key> *" for a trusted client (reloaded on SIGHUP and on change)')
    .option('--insecure', 'allow a worker socket reachable from other hosts without CURVE (warns)');
}

/**
 * Adds the connecting side's CURVE flags to every command below `root` that takes `--broker` or
 * `--connect`, and says in their help that those take a list.
 */
export function addConnectCurveFlags(root: Command): void {
  for (const command of root.commands) {
    addConnectCurveFlags(command);
    const longs = new Set(command.options.map((o) => o.long));
    // Every option that names a broker takes a list (shared/broker-list.ts): said once, here.
    for (const option of command.options) if (option.long === '--broker' || option.long === '--connect') option.description += '; several brokers: comma-separated';
    if (!(longs.has('--broker') || longs.has('--connect')) || longs.has('--curve-key')) continue;
    command
      .option('--curve-key <file>', "this process's secret key file (NAME.key, NAME.pub beside it)")
      .option('--broker-key <files>', "the broker's public key file (.pub): connect with CURVE; with several brokers, one for all or one per broker, separated by commas")
      .addOption(clientAuth())
      .option('--insecure', 'accepted for one config file across the cluster; the broker and the web app (open on a non-loopback --host) act on it');
  }
}

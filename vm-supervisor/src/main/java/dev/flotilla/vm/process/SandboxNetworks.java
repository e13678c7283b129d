package dev.flotilla.vm.process;

import dev.flotilla.vm.net.EgressConfig;
import dev.flotilla.vm.net.SandboxRules;
import dev.flotilla.vm.net.EgressHost;
import dev.flotilla.vm.net.HostFirewall;
import dev.flotilla.vm.net.NameSets;
import dev.flotilla.vm.net.SandboxDns;
import dev.flotilla.vm.oci.OciRuntime;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Egress networking of one process driver: what its sandboxes' networks share ({@link EgressHost}:
 * settings, the firewall, the resolvers, the rules, the DNS proxies' limits and the periodic
 * refresh, the same for every driver) and the sweep of what sandboxes that ended while no node
 * watched left behind (their pasta, their rules, their DNS redirect and sets).
 *
 * <p>Host names in the lists are matched at connection time through each sandbox's own
 * {@link dev.flotilla.vm.net.DnsProxy} ({@link SandboxDns}, owned by its
 * {@link SandboxRules}): see {@link EgressHost}.
 */
final class SandboxNetworks {
  private static final Logger log = LoggerFactory.getLogger(SandboxNetworks.class);

  private final EgressHost host;
  private final Path runRoot;
  private final OciRuntime oci;
  private volatile boolean swept;

  SandboxNetworks(EgressConfig config, Path runRoot, OciRuntime oci) {
    this.host = new EgressHost(config);
    this.runRoot = runRoot;
    this.oci = oci;
  }

  EgressConfig config() {
    return host.config();
  }

  HostFirewall firewall() {
    return host.firewall();
  }

  /** The resolvers: the configured ones, or the host's resolv.conf's. */
  List<InetAddress> dnsServers() {
    return host.dnsServers();
  }

  String upstreamResolvConf() {
    return host.upstreamResolvConf();
  }

  /** What is missing on this host for egress (empty: nothing). */
  List<String> missing() {
    List<String> m = new ArrayList<>();
    if (!Files.isExecutable(config().pasta())) m.add("no pasta at " + config().pasta() + " (apt-get install passt)");
    m.addAll(host.missingForRules());
    if (HostFacts.which("nsenter").isEmpty()) m.add("no nsenter (apt-get install util-linux)");
    Path tun = Path.of("/dev/net/tun");
    try {
      int mode = (Integer) Files.getAttribute(tun, "unix:mode");
      if ((mode & 0006) != 0006) m.add("/dev/net/tun is not 0666: pasta, running as the sandbox's uid, cannot open it");
    } catch (IOException | RuntimeException e) {
      m.add("no /dev/net/tun");
    }
    return m;
  }

  /** Marks the rules of this node's sandboxes (the run root's name is unique per node data directory). */
  String comment(String containerId) {
    return commentPrefix() + containerId;
  }

  String commentPrefix() {
    return "flotilla:" + runRoot.getFileName() + ":";
  }

  /** The rules and DNS proxy of one incarnation (the refresh re-applies them once applied). */
  SandboxRules rules(String sandboxId, long uid, String comment, dev.flotilla.vm.net.EgressPolicy policy) {
    return new SandboxRules(host, sandboxId, uid, comment, policy);
  }

  /** From now on the refresh re-applies {@code n}'s rules (until it closes). */
  void register(SandboxNetwork n) {
    n.rules().refreshFromNowOn();
  }

  /** One refresh pass (the scheduler's; tests call it to skip the wait). */
  void refreshAll() {
    host.refreshAll();
  }

  /**
   * Once per driver, before its first sandbox starts or is adopted: kills the pasta processes and
   * removes the rules of this node's incarnations whose container no longer runs (they ended while
   * no node of this data directory was alive). pasta first, then the rules.
   */
  synchronized void sweepOnce() {
    if (swept) return;
    swept = true;
    try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
      for (Path proc : procs.toList()) {
        String name = proc.getFileName().toString();
        if (!name.matches("\\d+")) continue;
        long pid = Long.parseLong(name);
        if (!SandboxNetwork.isPasta(pid)) continue;
        String container = containerOfPasta(pid);
        if (container != null && !running(container)) {
          log.info("killing pasta (pid {}) of ended container {}", pid, container);
          ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
        }
      }
    } catch (IOException e) {
      log.warn("cannot list /proc for leftover pasta processes: {}", e.getMessage());
    }
    try {
      HostFirewall firewall = host.firewall();
      for (Map.Entry<Long, String> e : firewall.installed(commentPrefix()).entrySet()) {
        String container = e.getValue().substring(commentPrefix().length());
        if (running(container)) continue;
        log.info("removing the egress rules of ended container {} (uid {})", container, e.getKey());
        if (firewall.remove(e.getKey(), e.getValue())) SandboxDns.remove(e.getKey());
      }
      // a DNS redirect (and its sets) whose filter rules went, but not it (a node that died in between)
      Map<Long, String> filtered = firewall.installed(commentPrefix());
      for (Map.Entry<Long, String> e : NameSets.installed(commentPrefix()).entrySet()) {
        String container = e.getValue().substring(commentPrefix().length());
        if (running(container) || filtered.containsKey(e.getKey())) continue;
        log.info("removing the DNS redirect and address sets of ended container {} (uid {})", container, e.getKey());
        SandboxDns.remove(e.getKey());
      }
    } catch (IOException | RuntimeException e) {
      log.warn("cannot sweep leftover egress rules: {}", e.getMessage());
    }
  }

  /** The container whose namespace a pasta process of this node serves, from its command line; null if not this node's. */
  private String containerOfPasta(long pid) {
    List<String> argv;
    try {
      argv = List.of(Files.readString(Path.of("/proc/" + pid + "/cmdline"), StandardCharsets.UTF_8).split("\0"));
    } catch (IOException e) {
      return null;
    }
    int i = argv.indexOf("--netns");
    if (i < 0 || i + 1 >= argv.size()) return null;
    Path netns = Path.of(argv.get(i + 1));
    // <runRoot>/<sandbox>-<incarnation>/net/netns
    if (netns.getNameCount() != runRoot.getNameCount() + 3 || !netns.startsWith(runRoot)) return null;
    return "fl-" + netns.getName(runRoot.getNameCount());
  }

  private boolean running(String container) {
    try {
      return oci.state(OciRuntime.requireId(container)).map(OciRuntime.State::running).orElse(false);
    } catch (IOException | RuntimeException e) {
      return true; // unsure: leave it
    }
  }
}

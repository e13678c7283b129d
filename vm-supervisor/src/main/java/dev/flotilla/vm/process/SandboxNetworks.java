package dev.flotilla.vm.process;

import dev.flotilla.vm.net.DnsProxy;
import dev.flotilla.vm.net.EgressConfig;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.net.EgressRules;
import dev.flotilla.vm.net.Endpoint;
import dev.flotilla.vm.net.HostFirewall;
import dev.flotilla.vm.net.NameSets;
import dev.flotilla.vm.net.NodeResolver;
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
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Egress networking of one process driver: what its sandboxes' networks share (settings, the
 * firewall, the resolver), the periodic refresh of host names, and the sweep of what sandboxes
 * that ended while no node watched left behind (their pasta, their rules).
 *
 * <p>Host names in the lists are matched at connection time: each sandbox's DNS goes to its own
 * {@link DnsProxy} ({@link SandboxDns}), which puts the addresses the sandbox is answered for a
 * listed name into the sandbox's allow or deny set before the answer reaches it. Names of the deny list are also
 * resolved by the node, when a sandbox starts and then every {@link EgressConfig#refresh()}, and
 * their addresses refused in its rules: a sandbox may learn an address without asking its DNS
 * (written into its code, or through DNS over HTTPS to an allowed address), and a denied name must
 * be refused then too. An allowed name needs no such resolution: an address the sandbox did not
 * look up is simply not allowed.
 */
final class SandboxNetworks {
  private static final Logger log = LoggerFactory.getLogger(SandboxNetworks.class);
  /** Every this many refreshes the rules are re-applied even if no address changed (someone may have flushed them). */
  private static final int HEAL_EVERY = 10;

  private final EgressConfig config;
  private final Path runRoot;
  private final OciRuntime oci;
  private final HostFirewall firewall = new HostFirewall();
  private final Set<SandboxNetwork> live = ConcurrentHashMap.newKeySet();
  private final AtomicLong ticks = new AtomicLong();
  private volatile ScheduledExecutorService refresher;
  private volatile List<InetAddress> dnsServers;
  private volatile boolean swept;
  private volatile String kernelSupport; // "" when the kernel has what name matching needs
  private final DnsProxy.Limits dnsLimits = DnsProxy.Limits.DEFAULTS;

  SandboxNetworks(EgressConfig config, Path runRoot, OciRuntime oci) {
    this.config = config;
    this.runRoot = runRoot;
    this.oci = oci;
  }

  EgressConfig config() {
    return config;
  }

  HostFirewall firewall() {
    return firewall;
  }

  DnsProxy.Limits dnsLimits() {
    return dnsLimits;
  }

  /** The resolvers: the configured ones, or the host's resolv.conf's. */
  List<InetAddress> dnsServers() {
    List<InetAddress> d = dnsServers;
    if (d == null) {
      d = config.dnsServers();
      if (d.isEmpty()) {
        try {
          d = NodeResolver.nameservers(Path.of("/etc/resolv.conf"));
        } catch (IOException e) {
          d = List.of();
        }
      }
      dnsServers = d;
    }
    return d;
  }

  /** What is missing on this host for egress (empty: nothing). */
  List<String> missing() {
    List<String> m = new ArrayList<>();
    if (!Files.isExecutable(config.pasta())) m.add("no pasta at " + config.pasta() + " (apt-get install passt)");
    for (String t : HostFirewall.TOOLS) {
      if (HostFacts.which(t).isEmpty()) m.add("no " + t + " (apt-get install iptables)");
    }
    boolean ipset = true;
    for (String t : NameSets.TOOLS) {
      if (HostFacts.which(t).isEmpty()) {
        m.add("no " + t + " (apt-get install ipset)");
        ipset = false;
      }
    }
    if (ipset && HostFacts.which("iptables").isPresent()) {
      String kernel = kernelSupport;
      if (kernel == null) kernelSupport = kernel = NameSets.kernelSupport().orElse("");
      if (!kernel.isEmpty()) m.add(kernel);
    }
    if (HostFacts.which("nsenter").isEmpty()) m.add("no nsenter (apt-get install util-linux)");
    Path tun = Path.of("/dev/net/tun");
    try {
      int mode = (Integer) Files.getAttribute(tun, "unix:mode");
      if ((mode & 0006) != 0006) m.add("/dev/net/tun is not 0666: pasta, running as the sandbox's uid, cannot open it");
    } catch (IOException | RuntimeException e) {
      m.add("no /dev/net/tun");
    }
    if (dnsServers().isEmpty()) m.add("no DNS server (none configured, none in /etc/resolv.conf)");
    return m;
  }

  /** Marks the rules of this node's sandboxes (the run root's name is unique per node data directory). */
  String comment(String containerId) {
    return commentPrefix() + containerId;
  }

  String commentPrefix() {
    return "flotilla:" + runRoot.getFileName() + ":";
  }

  EgressRules render(SandboxNetwork n) throws IOException {
    NodeResolver resolver = new NodeResolver(dnsServers());
    List<EgressRules.Target> targets = new ArrayList<>();
    for (Endpoint e : config.protectedEndpoints()) {
      for (InetAddress a : addresses(resolver, e.host())) targets.add(new EgressRules.Target(a, e.port()));
    }
    EgressRules.NameMatch names = n.nameMatch();
    // Matched at connection time (names != null), an allowed name is not resolved here: see the class comment.
    return new EgressRules(n.uid, n.comment(), dnsServers(), targets, cidrs(resolver, n.policy.deny(), true),
        cidrs(resolver, n.policy.allow(), names == null), !n.policy.allow().isEmpty(), names);
  }

  private static List<EgressPolicy.Cidr> cidrs(NodeResolver resolver, List<EgressPolicy.Destination> list, boolean resolveNames)
      throws IOException {
    List<EgressPolicy.Cidr> out = new ArrayList<>();
    for (EgressPolicy.Destination d : list) {
      if (d instanceof EgressPolicy.Cidr c) {
        out.add(c);
      } else if (d instanceof EgressPolicy.Host h && resolveNames) {
        for (InetAddress a : resolver.resolve(h.name())) out.add(EgressPolicy.Cidr.of(a));
      }
    }
    return out;
  }

  private static List<InetAddress> addresses(NodeResolver resolver, String host) throws IOException {
    EgressPolicy.Destination d = EgressPolicy.parseDestination(host);
    if (d instanceof EgressPolicy.Cidr c) return List.of(c.address());
    return resolver.resolve(host);
  }

  void register(SandboxNetwork n) {
    live.add(n);
    ScheduledExecutorService r = refresher;
    if (r == null) {
      synchronized (this) {
        if (refresher == null) {
          refresher = Executors.newSingleThreadScheduledExecutor(t -> {
            Thread th = new Thread(t, "flotilla-egress-refresh");
            th.setDaemon(true);
            return th;
          });
          long every = config.refresh().toMillis();
          refresher.scheduleWithFixedDelay(this::refreshAll, every, every, TimeUnit.MILLISECONDS);
        }
      }
    }
  }

  void unregister(SandboxNetwork n) {
    live.remove(n);
  }

  /** One refresh pass (the scheduler's; tests call it to skip the wait). */
  void refreshAll() {
    boolean heal = ticks.incrementAndGet() % HEAL_EVERY == 0;
    for (SandboxNetwork n : live) n.refresh(heal);
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

  /** Live networks (tests). */
  Set<SandboxNetwork> live() {
    return Set.copyOf(live);
  }
}

package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The node's side of egress that every driver shares: the settings, the host firewall, the
 * resolvers, the one rendering of a sandbox's {@link EgressPolicy} into its {@link EgressRules},
 * the limits of the sandboxes' DNS proxies, and the periodic refresh. A driver differs only in what
 * carries the sandbox's packets into the node's network namespace as the sandbox's uid: pasta for
 * the process driver, passt for the qemu driver. The rules, the DNS proxy and so the policy are the
 * same ({@link SandboxRules}: one incarnation's).
 *
 * <p>Host names in the lists are matched at connection time: each sandbox's DNS goes to its own
 * {@link DnsProxy} ({@link SandboxDns}), which puts the addresses the sandbox is answered for a
 * listed name into the sandbox's allow or deny set before the answer reaches it. pasta and passt
 * both forward the sandbox's DNS to the node's resolvers from sockets of the sandbox's uid, which
 * the uid's port-53 redirect sends to its proxy instead. Names of the deny list are also resolved
 * by the node, when a sandbox starts and then every {@link EgressConfig#refresh()}, and their
 * addresses refused in its rules: a sandbox may learn an address without asking its DNS (written
 * into its code, or through DNS over HTTPS to an allowed address), and a denied name must be
 * refused then too. An allowed name needs no such resolution: an address the sandbox did not look
 * up is simply not allowed.
 */
public final class EgressHost {
  /** Every this many refreshes the rules are re-applied even if no address changed (someone may have flushed them). */
  private static final int HEAL_EVERY = 10;

  /** A sandbox's network whose rules the refresh re-applies. */
  public interface Member {
    /** Re-applied when an address changed, or {@code heal}; never throws (the last rules stay). */
    void refresh(boolean heal);
  }

  private final EgressConfig config;
  private final HostFirewall firewall = new HostFirewall();
  private final Set<Member> live = ConcurrentHashMap.newKeySet();
  private final AtomicLong ticks = new AtomicLong();
  private volatile ScheduledExecutorService refresher;
  private volatile List<InetAddress> dnsServers;
  private volatile String kernelSupport; // "" when the kernel has what name matching needs
  private final DnsProxy.Limits dnsLimits = DnsProxy.Limits.DEFAULTS;

  public EgressHost(EgressConfig config) {
    this.config = config;
  }

  public EgressConfig config() {
    return config;
  }

  public HostFirewall firewall() {
    return firewall;
  }

  /** The bounds of each sandbox's DNS proxy. */
  public DnsProxy.Limits dnsLimits() {
    return dnsLimits;
  }

  /** The resolvers: the configured ones, or the host's resolv.conf's. */
  public List<InetAddress> dnsServers() {
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

  /** A resolv.conf naming the node's resolvers: what pasta and passt forward the sandbox's DNS to. */
  public String upstreamResolvConf() {
    StringBuilder conf = new StringBuilder();
    for (InetAddress d : dnsServers()) conf.append("nameserver ").append(d.getHostAddress()).append('\n');
    return conf.toString();
  }

  /** What is missing on this host for the rules and the name matching, whichever driver (empty: nothing). */
  public List<String> missingForRules() {
    List<String> m = new ArrayList<>();
    for (String t : HostFirewall.TOOLS) {
      if (which(t).isEmpty()) m.add("no " + t + " (apt-get install iptables)");
    }
    boolean ipset = true;
    for (String t : NameSets.TOOLS) {
      if (which(t).isEmpty()) {
        m.add("no " + t + " (apt-get install ipset)");
        ipset = false;
      }
    }
    if (ipset && which("iptables").isPresent()) {
      String kernel = kernelSupport;
      if (kernel == null) kernelSupport = kernel = NameSets.kernelSupport().orElse("");
      if (!kernel.isEmpty()) m.add(kernel);
    }
    if (dnsServers().isEmpty()) m.add("no DNS server (none configured, none in /etc/resolv.conf)");
    return m;
  }

  /**
   * The rules of one sandbox's uid under its policy, with no name matching at connection time: the
   * lists' names and the protected endpoints resolved now.
   */
  public EgressRules render(long uid, String comment, EgressPolicy policy) throws IOException {
    return render(uid, comment, policy, null);
  }

  /**
   * The rules of one sandbox's uid under its policy, the protected endpoints resolved now. With
   * {@code names} (its {@link SandboxDns}'s) the allow list's names are matched at connection time
   * and not resolved here, the deny list's are resolved too (see the class comment); without, both
   * lists' names are resolved here.
   */
  public EgressRules render(long uid, String comment, EgressPolicy policy, EgressRules.NameMatch names) throws IOException {
    NodeResolver resolver = new NodeResolver(dnsServers());
    List<EgressRules.Target> targets = new ArrayList<>();
    for (Endpoint e : config.protectedEndpoints()) {
      for (InetAddress a : addresses(resolver, e.host())) targets.add(new EgressRules.Target(a, e.port()));
    }
    return new EgressRules(uid, comment, dnsServers(), targets, cidrs(resolver, policy.deny(), true),
        cidrs(resolver, policy.allow(), names == null), !policy.allow().isEmpty(), names);
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

  /** From now on the refresh re-applies {@code m}'s rules (the refresh thread starts with the first member). */
  public void register(Member m) {
    live.add(m);
    if (refresher == null) {
      synchronized (this) {
        if (refresher == null) {
          ScheduledExecutorService r = Executors.newSingleThreadScheduledExecutor(t -> {
            Thread th = new Thread(t, "flotilla-egress-refresh");
            th.setDaemon(true);
            return th;
          });
          long every = config.refresh().toMillis();
          r.scheduleWithFixedDelay(this::refreshAll, every, every, TimeUnit.MILLISECONDS);
          refresher = r;
        }
      }
    }
  }

  public void unregister(Member m) {
    live.remove(m);
  }

  /** One refresh pass (the scheduler's; tests call it to skip the wait). */
  public void refreshAll() {
    boolean heal = ticks.incrementAndGet() % HEAL_EVERY == 0;
    for (Member m : live) m.refresh(heal);
  }

  /** Live members (tests). */
  public Set<Member> members() {
    return Set.copyOf(live);
  }

  /** A binary on PATH or the usual system directories. */
  public static java.util.Optional<Path> which(String name) {
    List<String> dirs = new ArrayList<>(List.of(System.getenv().getOrDefault("PATH", "").split(":")));
    dirs.addAll(List.of("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"));
    for (String d : dirs) {
      if (d.isEmpty()) continue;
      Path p = Path.of(d, name);
      if (java.nio.file.Files.isExecutable(p)) return java.util.Optional.of(p);
    }
    return java.util.Optional.empty();
  }
}

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
 * and the periodic refresh of host names. A driver differs only in what carries the sandbox's
 * packets into the node's network namespace as the sandbox's uid: pasta for the process driver,
 * passt for the qemu driver. The rules, and so the policy, are the same.
 *
 * <p>Host names in the lists are resolved by the node, when a sandbox starts and then every
 * {@link EgressConfig#refresh()}: the rules hold the addresses of the last resolution, not the
 * name (no per-connection matching).
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

  public EgressHost(EgressConfig config) {
    this.config = config;
  }

  public EgressConfig config() {
    return config;
  }

  public HostFirewall firewall() {
    return firewall;
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

  /** What is missing on this host for the rules, whichever driver (empty: nothing). */
  public List<String> missingForRules() {
    List<String> m = new ArrayList<>();
    for (String t : HostFirewall.TOOLS) {
      if (which(t).isEmpty()) m.add("no " + t + " (apt-get install iptables)");
    }
    if (dnsServers().isEmpty()) m.add("no DNS server (none configured, none in /etc/resolv.conf)");
    return m;
  }

  /** The rules of one sandbox's uid under its policy, the lists' names and the protected endpoints resolved now. */
  public EgressRules render(long uid, String comment, EgressPolicy policy) throws IOException {
    NodeResolver resolver = new NodeResolver(dnsServers());
    List<EgressRules.Target> targets = new ArrayList<>();
    for (Endpoint e : config.protectedEndpoints()) {
      for (InetAddress a : addresses(resolver, e.host())) targets.add(new EgressRules.Target(a, e.port()));
    }
    return new EgressRules(uid, comment, dnsServers(), targets, cidrs(resolver, policy.deny()),
        cidrs(resolver, policy.allow()), !policy.allow().isEmpty());
  }

  private static List<EgressPolicy.Cidr> cidrs(NodeResolver resolver, List<EgressPolicy.Destination> list) throws IOException {
    List<EgressPolicy.Cidr> out = new ArrayList<>();
    for (EgressPolicy.Destination d : list) {
      if (d instanceof EgressPolicy.Cidr c) {
        out.add(c);
      } else if (d instanceof EgressPolicy.Host h) {
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

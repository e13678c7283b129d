package dev.flotilla.vm.net;

import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;

/**
 * Node-level settings of egress networking.
 *
 * @param protectedEndpoints endpoints no sandbox reaches whatever its lists say (the node's gRPC,
 *     Artery, the journal): set by the node. The node's own addresses, loopback included, are
 *     refused anyway; these matter for endpoints on other hosts (the journal's database, other
 *     nodes' Artery ports)
 * @param dnsServers where sandboxes' DNS proxies ({@link DnsProxy}) forward their queries (pasta
 *     and passt send a sandbox's DNS towards them; the proxy takes it) and where the node resolves
 *     the deny lists' host names; empty: the host's {@code /etc/resolv.conf}
 * @param refresh how often deny lists' host names are resolved again and the rules re-applied
 * @param dnsForwardAddress the resolver address a sandbox sees in its {@code /etc/resolv.conf};
 *     pasta (a VM's passt) maps it to the first DNS server
 * @param pasta the pasta binary (Debian's {@code passt} package): the process driver's
 * @param passt the passt binary (the same package): the qemu driver's
 */
public record EgressConfig(List<Endpoint> protectedEndpoints, List<InetAddress> dnsServers, Duration refresh,
    InetAddress dnsForwardAddress, Path pasta, Path passt) {

  public static final Duration DEFAULT_REFRESH = Duration.ofSeconds(30);

  public EgressConfig {
    protectedEndpoints = List.copyOf(protectedEndpoints);
    dnsServers = List.copyOf(dnsServers);
    Objects.requireNonNull(dnsForwardAddress, "dnsForwardAddress");
    Objects.requireNonNull(pasta, "pasta");
    Objects.requireNonNull(passt, "passt");
    if (refresh.compareTo(Duration.ofSeconds(1)) < 0) throw new IllegalArgumentException("refresh must be at least 1 s");
  }

  /** No protected endpoints yet, the host's resolvers, a 30 s refresh, 169.254.1.1, pasta and passt in /usr/bin. */
  public static EgressConfig defaults() {
    try {
      return new EgressConfig(List.of(), List.of(), DEFAULT_REFRESH, InetAddress.getByName("169.254.1.1"),
          Path.of("/usr/bin/pasta"), Path.of("/usr/bin/passt"));
    } catch (java.net.UnknownHostException e) {
      throw new IllegalStateException(e);
    }
  }

  /** With these endpoints ({@code host:port}, {@code [v6]:port}), as the node sets them. */
  public EgressConfig withProtectedEndpoints(List<String> endpoints) {
    return new EgressConfig(endpoints.stream().map(Endpoint::parse).toList(), dnsServers, refresh, dnsForwardAddress, pasta, passt);
  }

  public EgressConfig withDnsServers(List<InetAddress> servers) {
    return new EgressConfig(protectedEndpoints, servers, refresh, dnsForwardAddress, pasta, passt);
  }

  public EgressConfig withPasta(Path binary) {
    return new EgressConfig(protectedEndpoints, dnsServers, refresh, dnsForwardAddress, binary, passt);
  }

  public EgressConfig withPasst(Path binary) {
    return new EgressConfig(protectedEndpoints, dnsServers, refresh, dnsForwardAddress, pasta, binary);
  }

  public EgressConfig withRefresh(Duration every) {
    return new EgressConfig(protectedEndpoints, dnsServers, every, dnsForwardAddress, pasta, passt);
  }
}

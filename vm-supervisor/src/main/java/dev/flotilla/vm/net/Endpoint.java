package dev.flotilla.vm.net;

import java.util.Locale;

/**
 * A node-level endpoint no sandbox may reach whatever its lists say: the node's gRPC port, Artery,
 * the journal. {@code host} is an IP literal or a DNS name (resolved by the node, like list
 * entries); both TCP and UDP to {@code port} are refused.
 */
public record Endpoint(String host, int port) {
  public Endpoint {
    if (port < 1 || port > 65535) throw new IllegalArgumentException("port must be 1-65535: " + port);
    EgressPolicy.parseDestination(host); // an address or a name; CIDRs are not endpoints
    if (host.contains("/")) throw new IllegalArgumentException("an endpoint's host is an address or a name, not a CIDR: " + host);
    host = host.toLowerCase(Locale.ROOT);
  }

  /** {@code host:port}, {@code [v6]:port}. */
  public static Endpoint parse(String s) {
    String t = s.strip();
    String host;
    String port;
    if (t.startsWith("[")) {
      int end = t.indexOf("]:");
      if (end < 0) throw new IllegalArgumentException("'" + s + "': write an IPv6 endpoint as [address]:port");
      host = t.substring(1, end);
      port = t.substring(end + 2);
    } else {
      int colon = t.lastIndexOf(':');
      if (colon < 0 || t.indexOf(':') != colon) throw new IllegalArgumentException("'" + s + "' is not host:port (IPv6: [address]:port)");
      host = t.substring(0, colon);
      port = t.substring(colon + 1);
    }
    if (!port.matches("\\d{1,5}")) throw new IllegalArgumentException("'" + s + "': the port must be a number");
    try {
      return new Endpoint(host, Integer.parseInt(port));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("'" + s + "': " + e.getMessage());
    }
  }

  @Override
  public String toString() {
    return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
  }
}

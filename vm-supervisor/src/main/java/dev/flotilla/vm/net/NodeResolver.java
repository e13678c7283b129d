package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Hashtable;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import javax.naming.NamingEnumeration;
import javax.naming.NamingException;
import javax.naming.directory.Attribute;
import javax.naming.directory.Attributes;
import javax.naming.directory.InitialDirContext;

/**
 * Resolves the host names of egress lists on the node, with the same DNS servers that pasta
 * forwards the sandbox's queries to (so the node and the sandbox see the same answers, give or take
 * a record's rotation), through the JDK's DNS provider ({@code jdk.naming.dns}): not the node's
 * {@code /etc/hosts} or NSS, which the sandbox does not see either.
 */
public final class NodeResolver {
  private final List<InetAddress> servers;

  public NodeResolver(List<InetAddress> servers) {
    if (servers.isEmpty()) throw new IllegalArgumentException("no DNS server");
    this.servers = List.copyOf(servers);
  }

  public List<InetAddress> servers() {
    return servers;
  }

  /**
   * A and AAAA records of {@code name}, CNAMEs followed (at most 8); empty if it has none. One
   * query per type: asked for several at once, the JDK sends ANY, which many servers refuse (RFC 8482).
   */
  public List<InetAddress> resolve(String name) throws IOException {
    Set<InetAddress> out = new LinkedHashSet<>();
    String current = name;
    for (int hop = 0; hop < 8; hop++) {
      addAll(out, query(current, "A").get("A"));
      addAll(out, query(current, "AAAA").get("AAAA"));
      if (!out.isEmpty()) break;
      Attribute cname = query(current, "CNAME").get("CNAME");
      if (cname == null) break;
      try {
        current = stripDot(cname.get().toString());
      } catch (NamingException e) {
        break;
      }
    }
    return List.copyOf(out);
  }

  private Attributes query(String name, String type) throws IOException {
    Hashtable<String, String> env = new Hashtable<>();
    env.put("java.naming.factory.initial", "com.sun.jndi.dns.DnsContextFactory");
    StringBuilder url = new StringBuilder();
    for (InetAddress s : servers) {
      if (url.length() > 0) url.append(' ');
      url.append("dns://").append(s instanceof java.net.Inet6Address ? "[" + s.getHostAddress() + "]" : s.getHostAddress());
    }
    env.put("java.naming.provider.url", url.toString());
    env.put("com.sun.jndi.dns.timeout.initial", "1000");
    env.put("com.sun.jndi.dns.timeout.retries", "2");
    InitialDirContext ctx = null;
    try {
      ctx = new InitialDirContext(env);
      return ctx.getAttributes(name + ".", new String[] {type});
    } catch (javax.naming.NameNotFoundException e) {
      return new javax.naming.directory.BasicAttributes();
    } catch (NamingException e) {
      throw new IOException("cannot resolve " + name + " with " + servers + ": " + e.getMessage(), e);
    } finally {
      if (ctx != null) {
        try {
          ctx.close();
        } catch (NamingException ignored) {
          // nothing held
        }
      }
    }
  }

  private static void addAll(Set<InetAddress> out, Attribute a) throws IOException {
    if (a == null) return;
    try {
      NamingEnumeration<?> e = a.getAll();
      while (e.hasMore()) {
        String v = e.next().toString().strip();
        // literals only: getByName does no lookup for them
        if (v.matches("[0-9a-fA-F:.]+")) out.add(InetAddress.getByName(v));
      }
    } catch (NamingException e) {
      throw new IOException(e.getMessage(), e);
    }
  }

  private static String stripDot(String s) {
    return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
  }

  /** The {@code nameserver} lines of a resolv.conf (the host's, when a node names no servers). */
  public static List<InetAddress> nameservers(Path resolvConf) throws IOException {
    List<InetAddress> out = new ArrayList<>();
    if (!Files.isReadable(resolvConf)) return out;
    for (String line : Files.readAllLines(resolvConf)) {
      String[] w = line.strip().split("\\s+");
      if (w.length >= 2 && w[0].equals("nameserver") && w[1].matches("[0-9a-fA-F:.]+") && !w[1].contains("%")) {
        out.add(InetAddress.getByName(w[1]));
      }
    }
    return out;
  }
}

package dev.flotilla.vm.net;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * A sandbox's network, as its spec options say: {@value #NETWORK} is {@code none} (the default: a
 * network namespace with loopback only) or {@code egress} (outbound connections through the node),
 * with {@value #ALLOW} and {@value #DENY}, comma-separated lists of CIDRs (IPv4 or IPv6, a bare
 * address is a /32 or /128) and DNS host names. Deny wins over allow; an empty allow list allows
 * everything the deny list and the node's own refusals leave.
 *
 * <p>Pure: parsing never resolves a name (no DNS at validation time).
 */
public record EgressPolicy(Mode mode, List<Destination> allow, List<Destination> deny) {
  /** Spec option: {@code none} or {@code egress}. */
  public static final String NETWORK = "network";
  /** Spec option: destinations allowed (comma-separated); empty: all that are not denied. */
  public static final String ALLOW = "network-allow";
  /** Spec option: destinations refused (comma-separated); wins over the allow list. */
  public static final String DENY = "network-deny";
  /** More entries than this in one list is refused: each becomes firewall rules on the node. */
  public static final int MAX_ENTRIES = 64;

  public static final EgressPolicy NONE = new EgressPolicy(Mode.NONE, List.of(), List.of());

  public enum Mode {
    NONE, EGRESS;

    public String text() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  /** One list entry. */
  public sealed interface Destination permits Cidr, Host {
    /** As written in an option (canonical form). */
    String text();
  }

  /** A network: {@code address} has no bits set past {@code prefix}. */
  public record Cidr(InetAddress address, int prefix) implements Destination {
    public Cidr {
      Objects.requireNonNull(address, "address");
      if (prefix < 0 || prefix > bits(address)) throw new IllegalArgumentException("prefix out of range: " + prefix);
    }

    public boolean ipv6() {
      return address instanceof Inet6Address;
    }

    public boolean contains(InetAddress a) {
      if (ipv6() != (a instanceof Inet6Address)) return false;
      byte[] n = address.getAddress();
      byte[] x = a.getAddress();
      for (int i = 0; i < prefix; i++) {
        int mask = 0x80 >>> (i % 8);
        if ((n[i / 8] & mask) != (x[i / 8] & mask)) return false;
      }
      return true;
    }

    @Override
    public String text() {
      return address.getHostAddress() + "/" + prefix;
    }

    /** The host address as a /32 or /128. */
    public static Cidr of(InetAddress a) {
      return new Cidr(a, bits(a));
    }
  }

  /**
   * A DNS name, lower case, no trailing dot: matched at connection time against the sandbox's own
   * lookups, which its node-side {@link DnsProxy} answers (a deny-list name is also resolved by the node).
   */
  public record Host(String name) implements Destination {
    @Override
    public String text() {
      return name;
    }
  }

  public EgressPolicy {
    Objects.requireNonNull(mode, "mode");
    allow = List.copyOf(allow);
    deny = List.copyOf(deny);
    if (mode == Mode.NONE && (!allow.isEmpty() || !deny.isEmpty())) {
      throw new IllegalArgumentException("allow and deny lists need network egress");
    }
  }

  public boolean egress() {
    return mode == Mode.EGRESS;
  }

  /** The names in both lists. */
  public List<String> hostNames() {
    List<String> out = new ArrayList<>();
    for (List<Destination> l : List.of(allow, deny)) {
      for (Destination d : l) if (d instanceof Host h && !out.contains(h.name())) out.add(h.name());
    }
    return out;
  }

  /** These options again (what a node writes down to rebuild the policy of an adopted sandbox). */
  public Map<String, String> toOptions() {
    if (mode == Mode.NONE) return Map.of(NETWORK, Mode.NONE.text());
    return Map.of(NETWORK, mode.text(), ALLOW, join(allow), DENY, join(deny));
  }

  private static String join(List<Destination> l) {
    return String.join(",", l.stream().map(Destination::text).toList());
  }

  /**
   * The policy in a spec's options.
   *
   * @throws IllegalArgumentException with what to fix
   */
  public static EgressPolicy fromOptions(Map<String, String> options) {
    String n = options.getOrDefault(NETWORK, "").strip().toLowerCase(Locale.ROOT);
    Mode mode = switch (n) {
      case "", "none" -> Mode.NONE;
      case "egress" -> Mode.EGRESS;
      default -> throw new IllegalArgumentException("network must be none or egress, not '" + options.get(NETWORK) + "'");
    };
    List<Destination> allow = parseList(ALLOW, options.getOrDefault(ALLOW, ""));
    List<Destination> deny = parseList(DENY, options.getOrDefault(DENY, ""));
    if (mode == Mode.NONE && (!allow.isEmpty() || !deny.isEmpty())) {
      throw new IllegalArgumentException((allow.isEmpty() ? "--deny" : "--allow") + " needs --network egress (the sandbox has no network)");
    }
    return new EgressPolicy(mode, allow, deny);
  }

  /** A comma-separated list; blanks around entries are ignored, duplicates kept once. */
  public static List<Destination> parseList(String what, String list) {
    List<Destination> out = new ArrayList<>();
    if (list == null || list.isBlank()) return out;
    for (String raw : list.split(",", -1)) {
      String e = raw.strip();
      if (e.isEmpty()) throw new IllegalArgumentException(what + ": empty entry in '" + list + "'");
      Destination d;
      try {
        d = parseDestination(e);
      } catch (IllegalArgumentException ex) {
        throw new IllegalArgumentException(what + ": " + ex.getMessage());
      }
      if (!out.contains(d)) out.add(d);
    }
    if (out.size() > MAX_ENTRIES) throw new IllegalArgumentException(what + ": at most " + MAX_ENTRIES + " entries, not " + out.size());
    return out;
  }

  private static final Pattern V4 = Pattern.compile("\\d{1,3}(\\.\\d{1,3}){3}");
  private static final Pattern LABEL = Pattern.compile("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
  private static final Pattern LOOKS_NUMERIC = Pattern.compile("[0-9./]+");

  /** {@code CIDR} (v4 or v6, a bare address is a host) or a DNS host name. */
  public static Destination parseDestination(String entry) {
    String e = entry.strip();
    if (e.isEmpty()) throw new IllegalArgumentException("empty destination");
    if (e.length() > 253 + 1) throw new IllegalArgumentException("'" + e + "' is longer than a DNS name can be");
    int slash = e.indexOf('/');
    String addr = slash < 0 ? e : e.substring(0, slash);
    boolean v6 = addr.contains(":");
    if (v6 || slash >= 0 || LOOKS_NUMERIC.matcher(e).matches()) {
      InetAddress a = parseAddress(addr, e);
      int prefix = bits(a);
      if (slash >= 0) {
        String p = e.substring(slash + 1);
        if (!p.matches("\\d{1,3}")) throw new IllegalArgumentException("'" + e + "': the prefix length must be a number");
        prefix = Integer.parseInt(p);
        if (prefix > bits(a)) throw new IllegalArgumentException("'" + e + "': the prefix length must be at most " + bits(a));
      }
      Cidr c = new Cidr(a, prefix);
      Cidr masked = new Cidr(mask(a, prefix), prefix);
      if (!masked.address().equals(a)) {
        throw new IllegalArgumentException("'" + e + "' has bits set past its prefix; did you mean " + masked.text() + "?");
      }
      return c;
    }
    String name = e.toLowerCase(Locale.ROOT);
    if (name.endsWith(".")) name = name.substring(0, name.length() - 1);
    if (name.length() > 253) throw new IllegalArgumentException("'" + e + "' is longer than a DNS name can be (253)");
    String[] labels = name.split("\\.", -1);
    for (String l : labels) {
      if (!LABEL.matcher(l).matches()) {
        throw new IllegalArgumentException("'" + e + "' is neither a CIDR (10.0.0.0/8, 2001:db8::/32) nor a DNS host name"
            + " (letters, digits and inner hyphens, labels of 1-63 separated by dots)");
      }
    }
    if (labels[labels.length - 1].matches("\\d+")) {
      throw new IllegalArgumentException("'" + e + "' is not a valid IPv4 address, and a host name's last label is not all digits");
    }
    return new Host(name);
  }

  private static InetAddress parseAddress(String addr, String entry) {
    if (addr.contains("%")) throw new IllegalArgumentException("'" + entry + "': zone ids (%) are not allowed");
    if (!addr.contains(":")) {
      if (!V4.matcher(addr).matches()) throw new IllegalArgumentException("'" + entry + "' is not an IPv4 address or CIDR");
      for (String o : addr.split("\\.")) {
        if (Integer.parseInt(o) > 255) throw new IllegalArgumentException("'" + entry + "' is not an IPv4 address (" + o + " > 255)");
      }
    } else if (!addr.matches("[0-9a-fA-F:.]+")) {
      throw new IllegalArgumentException("'" + entry + "' is not an IPv6 address or CIDR");
    }
    try {
      // A literal (checked above): no name service is asked.
      InetAddress a = InetAddress.getByName(addr);
      if (addr.contains(":") && a instanceof Inet4Address) {
        throw new IllegalArgumentException("'" + entry + "': write an IPv4-mapped address as IPv4");
      }
      return a;
    } catch (UnknownHostException ex) {
      throw new IllegalArgumentException("'" + entry + "' is not an IP address: " + ex.getMessage());
    }
  }

  static int bits(InetAddress a) {
    return a instanceof Inet6Address ? 128 : 32;
  }

  static InetAddress mask(InetAddress a, int prefix) {
    byte[] b = a.getAddress();
    for (int i = 0; i < b.length * 8; i++) {
      if (i >= prefix) b[i / 8] &= (byte) ~(0x80 >>> (i % 8));
    }
    try {
      return InetAddress.getByAddress(b);
    } catch (UnknownHostException e) {
      throw new IllegalStateException(e);
    }
  }
}

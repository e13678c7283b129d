package dev.flotilla.cli;

/** A node's gRPC address as the user wrote it: {@code host:port}, {@code [v6]:port}, or {@code host}. */
public record Endpoint(String host, int port) {
  public static final int DEFAULT_PORT = 7070;

  public static Endpoint parse(String text) {
    String t = text.strip();
    for (String scheme : new String[] {"http://", "grpc://"}) {
      if (t.startsWith(scheme)) t = t.substring(scheme.length());
    }
    if (t.endsWith("/")) t = t.substring(0, t.length() - 1);
    String host;
    String port = null;
    if (t.startsWith("[")) {
      int close = t.indexOf(']');
      if (close < 0) throw bad(text);
      host = t.substring(1, close);
      if (close + 1 < t.length()) {
        if (t.charAt(close + 1) != ':') throw bad(text);
        port = t.substring(close + 2);
      }
    } else {
      int colon = t.lastIndexOf(':');
      if (colon >= 0 && t.indexOf(':') != colon) throw bad(text); // bare IPv6 needs brackets
      host = colon < 0 ? t : t.substring(0, colon);
      port = colon < 0 ? null : t.substring(colon + 1);
    }
    if (host.isEmpty()) throw bad(text);
    int p = DEFAULT_PORT;
    if (port != null) {
      try {
        p = Integer.parseInt(port);
      } catch (NumberFormatException e) {
        throw bad(text);
      }
      if (p < 1 || p > 65535) throw bad(text);
    }
    return new Endpoint(host, p);
  }

  private static CliFailure bad(String text) {
    return new CliFailure(ExitCodes.USAGE,
        "endpoint '" + text + "' must be HOST:PORT, e.g. " + ClientOptions.DEFAULT_ENDPOINT);
  }

  @Override
  public String toString() {
    return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
  }
}

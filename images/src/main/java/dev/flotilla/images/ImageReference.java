package dev.flotilla.images;

import java.util.Objects;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * {@code [host[:port]/]repo[:tag][@sha256:digest]}, after the grammar of the distribution
 * project's reference package. Docker Hub defaults apply as the docker CLI applies them: {@code
 * busybox} is {@code docker.io/library/busybox:latest}, fetched from {@code registry-1.docker.io}.
 * When both a tag and a digest are given, the digest decides what is pulled; the tag is kept as
 * the name.
 *
 * @param domain the registry as written ({@code docker.io} for Docker Hub), with its port
 * @param repository the repository path, e.g. {@code library/busybox}
 * @param tag the tag, or null when only a digest was given
 * @param digest the manifest digest, or null
 */
public record ImageReference(String domain, String repository, String tag, Digest digest) {

  public static final String DOCKER_HUB = "docker.io";
  public static final String DOCKER_HUB_API = "registry-1.docker.io";
  public static final String DEFAULT_TAG = "latest";

  private static final int MAX_NAME = 255;
  private static final Pattern DOMAIN_COMPONENT = Pattern.compile("[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]");
  private static final Pattern IPV6 = Pattern.compile("\\[[a-fA-F0-9:]+\\]");
  private static final Pattern PATH_COMPONENT = Pattern.compile("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
  private static final Pattern TAG = Pattern.compile("[\\w][\\w.-]{0,127}");

  public ImageReference {
    Objects.requireNonNull(domain, "domain");
    Objects.requireNonNull(repository, "repository");
    if (tag == null && digest == null) {
      throw new ImageException("an image reference needs a tag or a digest");
    }
  }

  /** Parses a reference; the message of a refusal names the part to fix. */
  public static ImageReference parse(String ref) {
    if (ref == null || ref.isBlank()) {
      throw new ImageException("empty image reference (expected [host[:port]/]repo[:tag|@sha256:digest])");
    }
    if (!ref.equals(ref.strip())) {
      throw new ImageException("image reference '" + ref + "' has leading or trailing spaces");
    }
    String rest = ref;
    Digest digest = null;
    int at = rest.indexOf('@');
    if (at >= 0) {
      try {
        digest = Digest.parse(rest.substring(at + 1));
      } catch (ImageException e) {
        throw new ImageException("image reference '" + ref + "': " + e.getMessage());
      }
      rest = rest.substring(0, at);
    }
    String tag = null;
    int colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      tag = rest.substring(colon + 1);
      rest = rest.substring(0, colon);
      if (!TAG.matcher(tag).matches()) {
        throw new ImageException("image reference '" + ref + "': tag '" + tag
            + "' is invalid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')");
      }
    }
    if (rest.isEmpty()) {
      throw new ImageException("image reference '" + ref + "' has no repository name");
    }
    if (rest.length() > MAX_NAME) {
      throw new ImageException("image reference '" + ref + "': the name is longer than " + MAX_NAME + " characters");
    }
    String domain = DOCKER_HUB;
    String path = rest;
    int slash = rest.indexOf('/');
    if (slash >= 0) {
      String first = rest.substring(0, slash);
      if (first.contains(".") || first.contains(":") || first.equals("localhost") || !first.equals(first.toLowerCase())) {
        domain = first;
        path = rest.substring(slash + 1);
        checkDomain(ref, domain);
      }
    }
    if (domain.equals("index.docker.io") || domain.equals(DOCKER_HUB_API)) {
      domain = DOCKER_HUB;
    }
    if (path.isEmpty()) {
      throw new ImageException("image reference '" + ref + "' has no repository after the registry host");
    }
    for (String c : path.split("/", -1)) {
      if (!PATH_COMPONENT.matcher(c).matches()) {
        String why = !c.equals(c.toLowerCase()) ? "must be lowercase" : c.isEmpty() ? "is empty (double or trailing '/')"
            : "may hold only a-z, 0-9 and single separators '.', '_', '__' or '-' between them";
        throw new ImageException("image reference '" + ref + "': repository component '" + c + "' " + why);
      }
    }
    if (domain.equals(DOCKER_HUB) && !path.contains("/")) {
      path = "library/" + path;
    }
    // The bound is on the canonical name (what is stored and parsed again when a sandbox restarts),
    // not on what was typed: "docker.io/library/" must still fit.
    if (domain.length() + 1 + path.length() > MAX_NAME) {
      throw new ImageException("image reference '" + ref + "': the name " + domain + "/" + path + " is longer than "
          + MAX_NAME + " characters");
    }
    if (tag == null && digest == null) {
      tag = DEFAULT_TAG;
    }
    return new ImageReference(domain, path, tag, digest);
  }

  private static void checkDomain(String ref, String domain) {
    String host = domain;
    if (host.startsWith("[")) {
      int close = host.indexOf(']');
      if (close < 0 || !IPV6.matcher(host.substring(0, close + 1)).matches()) {
        throw new ImageException("image reference '" + ref + "': registry '" + domain + "' is not a valid [IPv6] address");
      }
      String port = host.substring(close + 1);
      if (!port.isEmpty()) {
        checkPort(ref, domain, port.startsWith(":") ? port.substring(1) : port);
      }
      return;
    }
    int colon = host.indexOf(':');
    if (colon >= 0) {
      checkPort(ref, domain, host.substring(colon + 1));
      host = host.substring(0, colon);
    }
    for (String c : host.split("\\.", -1)) {
      if (!DOMAIN_COMPONENT.matcher(c).matches()) {
        throw new ImageException("image reference '" + ref + "': registry host '" + host
            + "' is invalid (letters, digits and '-' between dots)");
      }
    }
  }

  private static void checkPort(String ref, String domain, String port) {
    if (!port.matches("[0-9]{1,5}") || Integer.parseInt(port) > 65535 || Integer.parseInt(port) == 0) {
      throw new ImageException("image reference '" + ref + "': registry '" + domain + "' has an invalid port '" + port + "'");
    }
  }

  /** The host[:port] the distribution API is served from. */
  public String registry() {
    return domain.equals(DOCKER_HUB) ? DOCKER_HUB_API : domain;
  }

  public Optional<String> tagOpt() {
    return Optional.ofNullable(tag);
  }

  public Optional<Digest> digestOpt() {
    return Optional.ofNullable(digest);
  }

  /** What goes in {@code /v2/<repo>/manifests/<ref>}: the digest when there is one, else the tag. */
  public String manifestReference() {
    return digest != null ? digest.toString() : tag;
  }

  /** This reference without its digest (a name): {@code domain/repo:tag}; null tag means none. */
  public ImageReference withoutDigest() {
    return tag == null ? null : new ImageReference(domain, repository, tag, null);
  }

  public ImageReference withDigest(Digest d) {
    return new ImageReference(domain, repository, tag, d);
  }

  /** The canonical form, {@code domain/repo[:tag][@digest]}, e.g. {@code docker.io/library/busybox:latest}. */
  @Override
  public String toString() {
    StringBuilder sb = new StringBuilder(domain).append('/').append(repository);
    if (tag != null) {
      sb.append(':').append(tag);
    }
    if (digest != null) {
      sb.append('@').append(digest);
    }
    return sb.toString();
  }
}

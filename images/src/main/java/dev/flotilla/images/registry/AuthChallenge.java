package dev.flotilla.images.registry;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * One challenge of a {@code WWW-Authenticate} header (RFC 7235): a scheme and its parameters,
 * e.g. {@code Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"}.
 */
record AuthChallenge(String scheme, Map<String, String> params) {

  /** Every challenge in the header values, in order; unparseable parts are dropped. */
  static List<AuthChallenge> parse(List<String> headerValues) {
    List<AuthChallenge> out = new ArrayList<>();
    for (String v : headerValues) {
      parseOne(v, out);
    }
    return out;
  }

  private static void parseOne(String s, List<AuthChallenge> out) {
    int i = 0;
    int n = s.length();
    String scheme = null;
    Map<String, String> params = new LinkedHashMap<>();
    while (i < n) {
      while (i < n && (s.charAt(i) == ' ' || s.charAt(i) == ',')) {
        i++;
      }
      int start = i;
      while (i < n && s.charAt(i) != ' ' && s.charAt(i) != '=' && s.charAt(i) != ',') {
        i++;
      }
      String token = s.substring(start, i);
      if (token.isEmpty()) {
        break;
      }
      int j = i;
      while (j < n && s.charAt(j) == ' ') {
        j++;
      }
      if (j < n && s.charAt(j) == '=' && scheme != null) {
        i = j + 1;
        while (i < n && s.charAt(i) == ' ') {
          i++;
        }
        StringBuilder value = new StringBuilder();
        if (i < n && s.charAt(i) == '"') {
          i++;
          while (i < n && s.charAt(i) != '"') {
            if (s.charAt(i) == '\\' && i + 1 < n) {
              i++;
            }
            value.append(s.charAt(i++));
          }
          i++;
        } else {
          while (i < n && s.charAt(i) != ',') {
            value.append(s.charAt(i++));
          }
        }
        params.put(token.toLowerCase(Locale.ROOT), value.toString().strip());
      } else {
        if (scheme != null) {
          out.add(new AuthChallenge(scheme, params));
          params = new LinkedHashMap<>();
        }
        scheme = token;
      }
    }
    if (scheme != null) {
      out.add(new AuthChallenge(scheme, params));
    }
  }

  boolean is(String name) {
    return scheme.equalsIgnoreCase(name);
  }
}

package dev.flotilla.cli;

import java.util.Locale;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** {@code -o}: the human form (a table, or details for one sandbox) or JSON. */
enum OutputFormat {
  TABLE, JSON;

  static final class Converter implements ITypeConverter<OutputFormat> {
    @Override
    public OutputFormat convert(String value) {
      return switch (value.strip().toLowerCase(Locale.ROOT)) {
        case "json" -> JSON;
        case "table", "text" -> TABLE;
        default -> throw new TypeConversionException(
            "'" + value + "' is not an output format (use json, or leave -o out)");
      };
    }
  }
}

"""Operations: metrics/health endpoints, consumer lag monitoring."""

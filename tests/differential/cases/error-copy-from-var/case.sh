# COPY --from=$V with a stage ARG is refused: current BuildKit says "variable expansion is not supported for --from"; docker 20.10 does not expand it and fails on the reference "$V"
EXPECT=fail

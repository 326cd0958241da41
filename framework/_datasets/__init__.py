"""Dataset handles and what only they use: transactions, Arrow and Parquet, Foundry dataset schemas."""

from tsekit.cli import main

main()
